"""The concept graph's vocabulary and its seed: concepts, relations, provenance, the curated file.

The seed (`seed_ontology.yaml`, shipped in the package) is a readable file a radiologist can
edit. Loading validates it completely and names the place of the first problem, e.g.
`seed_ontology.yaml: associations[12].weight: Input should be a valid number, got 'high'`.
The file's structure is a pydantic model; what names what (the CheXpert labels, the sites, the
hierarchy, the ends of an edge, one concept per term) is checked after, against the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cpo_pipeline.radiology.chexpert import (
    DISEASES,
    HIERARCHY,
    NON_DISEASE_OBSERVATIONS,
)
from cpo_pipeline.storage import content_hash

SEED_PATH = Path(__file__).with_name("seed_ontology.yaml")
SEED_VERSION = 1

# Concept kinds, in the order a symmetric edge is written (a disease first, a location last).
DISEASE = "disease"
# Labelled like a disease, but never a counterfactual target (No Finding, Support Devices).
OBSERVATION = "observation"
ATTRIBUTE = "attribute"
LOCATION = "location"
# Where an exclusion holds, when not anywhere in the chest (`ConceptEdge.scope`).
SAME_SIDE, SAME_LESION = "same side", "same lesion"
EXCLUSION_SCOPES = (SAME_SIDE, SAME_LESION)
KINDS = (DISEASE, OBSERVATION, ATTRIBUTE, LOCATION)

# The paper's four attribute categories.
ATTRIBUTE_CATEGORIES = (
    "morphological_alteration",
    "density_anomaly",
    "anatomical_deviation",
    "functional_indicator",
)
LOCATION_REGIONS = ("lung", "pleura", "heart", "mediastinum", "diaphragm", "bone", "soft_tissue")

# The paper's three relations, each symmetric ...
ASSOCIATION = "association"
IRRELEVANCE = "irrelevance"
EXCLUSION = "exclusion"
SYMMETRIC_RELATIONS = (ASSOCIATION, IRRELEVANCE, EXCLUSION)
# ... and two directed ones: child -> parent in the CheXpert hierarchy, disease -> typical site.
SUBTYPE_OF = "subtype_of"
LOCATED_AT = "located_at"
RELATIONS = (*SYMMETRIC_RELATIONS, SUBTYPE_OF, LOCATED_AT)

# Where an edge comes from, most trusted first: when sources disagree about a pair, the first wins.
SEED = "seed"
STATISTICS = "statistics"
LLM = "llm"
PROVENANCES = (SEED, STATISTICS, LLM)


class OntologyError(ValueError):
    """A seed file that cannot be used; the message names the file, the place and the problem."""

    def __init__(self, source: str | Path, place: str, problem: str) -> None:
        super().__init__(f"{source}: {place}: {problem}")
        self.source = str(source)
        self.place = place
        self.problem = problem


@dataclass(frozen=True)
class Concept:
    """One node: a disease, an observation, a radiographic attribute or an anatomical location.

    `group` is an attribute's category or a location's region (None for diseases and
    observations). `synonyms` exclude the preferred term `name`.
    """

    name: str
    kind: str
    group: str | None
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConceptEdge:
    """One relation between two concepts, as one source asserts it.

    `support` counts what the claim rests on: studies for statistics, reports for an LLM, 0 for
    the seed. `lift` and its confidence interval are set for statistics only, `model` for an LLM.
    """

    source: str
    target: str
    relation: str
    provenance: str
    weight: float
    support: int
    rationale: str
    lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    model: str | None = None
    # Where an exclusion holds: None anywhere in the chest; "same side" only when both sit in
    # the same hemithorax (hyperlucency on the left does not rule out a white right
    # hemithorax); "same lesion" only for one lesion (two nodules may differ in margin).
    scope: str | None = None


def normalise_term(text: str) -> str:
    """The form under which terms are compared: lower case, hyphens as spaces, single spaces."""
    return " ".join(text.lower().replace("-", " ").split())


@dataclass(frozen=True)
class Ontology:
    """The validated seed: every concept and the curated edges (relations, hierarchy, sites)."""

    concepts: tuple[Concept, ...]
    edges: tuple[ConceptEdge, ...]
    sha256: str

    @cached_property
    def by_name(self) -> dict[str, Concept]:
        return {concept.name: concept for concept in self.concepts}

    @cached_property
    def _terms(self) -> dict[str, str]:
        return {
            normalise_term(term): concept.name
            for concept in self.concepts
            for term in (concept.name, *concept.synonyms)
        }

    def names(self, kind: str) -> tuple[str, ...]:
        """The names of every concept of `kind`, in file order."""
        return tuple(concept.name for concept in self.concepts if concept.kind == kind)

    def preferred_term(self, phrase: str) -> str | None:
        """The concept a phrase names, through its synonyms ("ground glass" -> "ground-glass
        opacity"); None when no concept has it as a name or synonym."""
        return self._terms.get(normalise_term(phrase))

    def orient(self, first: str, second: str) -> tuple[str, str]:
        """The order a symmetric edge between two concepts is stored in: by kind, then name."""
        def rank(name: str) -> tuple[int, str]:
            return KINDS.index(self.by_name[name].kind), name
        return (first, second) if rank(first) <= rank(second) else (second, first)


def load_ontology(path: Path = SEED_PATH) -> Ontology:
    """Read and validate a seed file (by default the one shipped in the package)."""
    content = path.read_bytes()
    try:
        # libyaml's loader when PyYAML has it: the pure-Python one takes ~0.1 s for the seed.
        document = yaml.load(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "file"
        problem = getattr(error, "problem", None) or str(error)
        raise OntologyError(path.name, place, f"not valid YAML: {problem}") from error
    return parse_ontology(document, path.name, content_hash(content))


_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _SeedPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ConceptEntry(_SeedPart):
    name: _Text
    synonyms: tuple[_Text, ...] = ()


class _DiseaseEntry(_ConceptEntry):
    sites: tuple[_Text, ...] = ()


class _EdgeEntry(_SeedPart):
    between: tuple[_Text, _Text]
    # strict: a weight written as text ("0.5", "high") is a mistake, not a number.
    weight: Annotated[float, Field(gt=0, le=1, strict=True)]
    rationale: _Text
    scope: Literal[EXCLUSION_SCOPES] | None = None


class SeedDocument(_SeedPart):
    """The seed file's structure, section by section; `parse_ontology` checks what names what."""

    version: Literal[SEED_VERSION]
    diseases: tuple[_DiseaseEntry, ...]
    observations: tuple[_ConceptEntry, ...]
    attributes: dict[Literal[ATTRIBUTE_CATEGORIES], tuple[_ConceptEntry, ...]]
    locations: dict[Literal[LOCATION_REGIONS], tuple[_ConceptEntry, ...]]
    hierarchy: dict[_Text, tuple[_Text, ...]]
    associations: tuple[_EdgeEntry, ...]
    exclusions: tuple[_EdgeEntry, ...]
    irrelevances: tuple[_EdgeEntry, ...]


class _Misplaced(Exception):
    """A cross-reference problem: (loc, problem), loc a path into the document as pydantic's."""


def parse_ontology(document: object, source: str, sha256: str) -> Ontology:
    """Validate a parsed seed document; `source` names it in errors."""
    try:
        seed = SeedDocument.model_validate(document)
        ontology = Ontology(_concepts(seed), (), sha256)
        edges = (*_site_edges(seed, ontology), *_hierarchy_edges(seed, ontology),
                 *_curated_edges(seed, ontology))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        problem = first["msg"]
        if first["type"] != "missing" and not isinstance(first["input"], dict | list):
            problem += f", got {first['input']!r}"
        raise OntologyError(source, _place(document, first["loc"]), problem) from error
    except _Misplaced as error:
        loc, problem = error.args
        raise OntologyError(source, _place(document, loc), problem) from None
    return Ontology(ontology.concepts, edges, sha256)


def _place(document: object, loc: tuple) -> str:
    """`loc` as a reader finds it: `diseases[11] (Pneumothorax).sites[5]`, `file` for the whole.

    An entry is followed by its name, except when the name is the problem (the message quotes it).
    """
    place, node = "", document
    for step, after in zip_longest(loc, loc[1:]):
        if step == "[key]":  # pydantic's mark for a bad mapping key: the key is the place
            continue
        place += f"[{step}]" if isinstance(step, int) else f".{step}" if place else step
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
        name = node.get("name") if isinstance(node, dict) else None
        if isinstance(step, int) and after != "name" and isinstance(name, str):
            place += f" ({name.strip()})"
    return place or "file"


def _concepts(seed: SeedDocument) -> tuple[Concept, ...]:
    for section, expected in (("diseases", DISEASES), ("observations", NON_DISEASE_OBSERVATIONS)):
        names = [entry.name for entry in getattr(seed, section)]
        for index, name in enumerate(names):
            if name not in expected:
                raise _Misplaced((section, index, "name"), f"{name!r} is not one of the CheXpert "
                                 f"{section}: {list(expected)}")
        missing = [label for label in expected if label not in names]
        if missing:
            raise _Misplaced((section,), f"missing {missing}; every CheXpert label needs a node")
    sections = (("diseases", DISEASE, {None: seed.diseases}),
                ("observations", OBSERVATION, {None: seed.observations}),
                ("attributes", ATTRIBUTE, seed.attributes),
                ("locations", LOCATION, seed.locations))
    concepts, owners = [], {}
    for section, kind, groups in sections:
        for group, entries in groups.items():
            for index, entry in enumerate(entries):
                loc = (section, index) if group is None else (section, group, index)
                terms = {(*loc, "name"): entry.name}
                terms |= {(*loc, "synonyms", i): synonym for i, synonym in enumerate(entry.synonyms)}
                for term_loc, term in terms.items():
                    key = normalise_term(term)
                    if key in owners:
                        raise _Misplaced(term_loc, f"{term!r} already names {owners[key]!r}; a "
                                         "term may name one concept only")
                    owners[key] = entry.name
                concepts.append(Concept(entry.name, kind, group, entry.synonyms))
    return tuple(concepts)


def _known(ontology: Ontology, name: str, loc: tuple, kinds: tuple[str, ...]) -> str:
    concept = ontology.by_name.get(name)
    if concept is None or concept.kind not in kinds:
        raise _Misplaced(loc, f"unknown {' or '.join(kinds)} {name!r}")
    return name


def _site_edges(seed: SeedDocument, ontology: Ontology) -> list[ConceptEdge]:
    return [
        ConceptEdge(disease.name, _known(ontology, site, ("diseases", i, "sites", j), (LOCATION,)),
                    LOCATED_AT, SEED, 1.0, 0, f"the {site} is a typical site of {disease.name}")
        for i, disease in enumerate(seed.diseases) for j, site in enumerate(disease.sites)
    ]


def _hierarchy_edges(seed: SeedDocument, ontology: Ontology) -> list[ConceptEdge]:
    for parent, children in seed.hierarchy.items():
        _known(ontology, parent, ("hierarchy", parent), (DISEASE,))
        for index, child in enumerate(children):
            _known(ontology, child, ("hierarchy", parent, index), (DISEASE,))
    # The labeller, the demo generator and this file must agree on what implies what.
    written = {parent: set(children) for parent, children in seed.hierarchy.items()}
    if written != {parent: set(children) for parent, children in HIERARCHY.items()}:
        raise _Misplaced(("hierarchy",), f"expected CheXpert's hierarchy {dict(HIERARCHY)}, got "
                         f"{seed.hierarchy}")
    return [
        ConceptEdge(child, parent, SUBTYPE_OF, SEED, 1.0, 0,
                    f"CheXpert hierarchy: {child} is a kind of {parent}")
        for parent, children in seed.hierarchy.items() for child in children
    ]


def _curated_edges(seed: SeedDocument, ontology: Ontology) -> list[ConceptEdge]:
    edges, seen = [], {}
    for section, relation in (("associations", ASSOCIATION), ("exclusions", EXCLUSION),
                              ("irrelevances", IRRELEVANCE)):
        for index, entry in enumerate(getattr(seed, section)):
            loc = (section, index, "between")
            first, second = (_known(ontology, name, (*loc, i), (DISEASE, OBSERVATION, ATTRIBUTE))
                             for i, name in enumerate(entry.between))
            if first == second:
                raise _Misplaced(loc, f"a concept cannot relate to itself ({first!r})")
            pair = frozenset((first, second))
            if pair in seen:
                raise _Misplaced(loc, f"{first!r} and {second!r} are already related at "
                                 f"{seen[pair]}")
            seen[pair] = f"{section}[{index}]"
            if entry.scope is not None and relation != EXCLUSION:
                raise _Misplaced((section, index, "scope"),
                                 "only an exclusion depends on where its two concepts sit")
            edges.append(ConceptEdge(*ontology.orient(first, second), relation, SEED,
                                     entry.weight, 0, entry.rationale, scope=entry.scope))
    return edges
