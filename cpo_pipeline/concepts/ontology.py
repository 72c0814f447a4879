"""The concept graph's vocabulary and its seed: concepts, relations, provenance, the curated file.

The seed (`seed_ontology.yaml`, shipped in the package) is a readable file a radiologist can
edit. Loading validates it completely and names the place of the first problem, e.g.
`seed_ontology.yaml: associations[12].weight: expected a number in (0, 1], got 'high'`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from cpo_pipeline.radiology.chexpert import (
    DISEASES,
    HIERARCHY,
    NON_DISEASE_OBSERVATIONS,
)

SEED_PATH = Path(__file__).with_name("seed_ontology.yaml")
SEED_VERSION = 1

# Concept kinds, in the order a symmetric edge is written (a disease first, a location last).
DISEASE = "disease"
OBSERVATION = "observation"
ATTRIBUTE = "attribute"
LOCATION = "location"
KINDS = (DISEASE, OBSERVATION, ATTRIBUTE, LOCATION)

# The paper's four attribute categories.
ATTRIBUTE_CATEGORIES = (
    "morphological_alteration",
    "density_anomaly",
    "anatomical_deviation",
    "functional_indicator",
)
LOCATION_REGIONS = ("lung", "pleura", "heart", "mediastinum", "diaphragm", "bone", "soft_tissue")

# Labelled like diseases, but never a counterfactual target: the paper's 12 disease entities are
# the other CheXpert labels.

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
        document = yaml.safe_load(content)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "file"
        problem = getattr(error, "problem", None) or str(error)
        raise OntologyError(path.name, place, f"not valid YAML: {problem}") from error
    return parse_ontology(document, path.name, hashlib.sha256(content).hexdigest())


_SECTIONS = (
    "version", "diseases", "observations", "attributes", "locations", "hierarchy",
    "associations", "exclusions",
)
_EDGE_SECTIONS = {"associations": ASSOCIATION, "exclusions": EXCLUSION}
_EDGE_FIELDS = ("between", "weight", "rationale")


class _SeedReader:
    """Walks a parsed seed document; every check that fails raises at its exact place."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.concepts: list[Concept] = []
        self.places: dict[str, str] = {}
        self.terms: dict[str, str] = {}

    def fail(self, place: str, problem: str) -> OntologyError:
        return OntologyError(self.source, place, problem)

    def mapping(self, value: object, place: str, fields: tuple[str, ...],
                required: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(place, f"expected a mapping, got {_shown(value)}")
        unknown = [key for key in value if key not in fields]
        if unknown:
            raise self.fail(place, f"unknown field {unknown[0]!r}; expected fields {list(fields)}")
        missing = [key for key in required if key not in value]
        if missing:
            raise self.fail(place, f"missing field {missing[0]!r}")
        return value

    def items(self, value: object, place: str) -> list:
        if not isinstance(value, list):
            raise self.fail(place, f"expected a list, got {_shown(value)}")
        return value

    def text(self, value: object, place: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(place, f"expected non-empty text, got {_shown(value)}")
        return value.strip()

    def groups(self, value: object, place: str, allowed: tuple[str, ...]) -> dict[str, list]:
        if not isinstance(value, dict):
            raise self.fail(place, f"expected a mapping of group -> list, got {_shown(value)}")
        for group in value:
            if group not in allowed:
                raise self.fail(f"{place}.{group}",
                                f"unknown group; expected one of {list(allowed)}")
        return value

    def concept(self, entry: object, place: str, kind: str, group: str | None) -> dict:
        fields = ("name", "synonyms", "sites") if kind == DISEASE else ("name", "synonyms")
        entry = self.mapping(entry, place, fields, required=("name",))
        name = self.text(entry["name"], f"{place}.name")
        place = f"{place} ({name})"
        listed = self.items(entry.get("synonyms", []), f"{place}.synonyms")
        synonyms = tuple(
            self.text(synonym, f"{place}.synonyms[{index}]")
            for index, synonym in enumerate(listed)
        )
        self._claim(name, name, f"{place}.name")
        for index, synonym in enumerate(synonyms):
            self._claim(synonym, name, f"{place}.synonyms[{index}]")
        self.places[name] = place
        self.concepts.append(Concept(name, kind, group, synonyms))
        return entry

    def _claim(self, term: str, owner: str, place: str) -> None:
        key = normalise_term(term)
        if key in self.terms:
            raise self.fail(place, f"{term!r} already names {self.terms[key]!r}; a term may "
                            "name one concept only")
        self.terms[key] = owner

    def labelled_concepts(self, document: dict, section: str, kind: str,
                          expected: tuple[str, ...]) -> list[dict]:
        entries = []
        for index, entry in enumerate(self.items(document[section], section)):
            place = f"{section}[{index}]"
            entries.append(self.concept(entry, place, kind, None))
            name = entries[-1]["name"].strip()
            if name not in expected:
                raise self.fail(f"{place}.name", f"{name!r} is not one of the CheXpert "
                                f"{section}: {list(expected)}")
        missing = [label for label in expected if label not in self.places]
        if missing:
            raise self.fail(section, f"missing {missing}; every CheXpert label needs a node")
        return entries

    def known(self, name: object, place: str, kinds: tuple[str, ...]) -> str:
        name = self.text(name, place)
        concept = next((c for c in self.concepts if c.name == name), None)
        if concept is None or concept.kind not in kinds:
            raise self.fail(place, f"unknown {' or '.join(kinds)} {name!r}")
        return name


def _shown(value: object) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "nothing"


def parse_ontology(document: object, source: str, sha256: str) -> Ontology:
    """Validate a parsed seed document; `source` names it in errors."""
    reader = _SeedReader(source)
    document = reader.mapping(document, "file", _SECTIONS, required=_SECTIONS)
    if document["version"] != SEED_VERSION:
        raise reader.fail("version", f"expected {SEED_VERSION}, got {_shown(document['version'])}")

    diseases = reader.labelled_concepts(document, "diseases", DISEASE, DISEASES)
    reader.labelled_concepts(document, "observations", OBSERVATION, NON_DISEASE_OBSERVATIONS)
    for kind, section, allowed in ((ATTRIBUTE, "attributes", ATTRIBUTE_CATEGORIES),
                                   (LOCATION, "locations", LOCATION_REGIONS)):
        for group, entries in reader.groups(document[section], section, allowed).items():
            for index, entry in enumerate(reader.items(entries, f"{section}.{group}")):
                reader.concept(entry, f"{section}.{group}[{index}]", kind, group)

    edges = []
    for entry in diseases:
        disease = entry["name"].strip()
        place = f"{reader.places[disease]}.sites"
        for index, site in enumerate(reader.items(entry.get("sites", []), place)):
            location = reader.known(site, f"{place}[{index}]", (LOCATION,))
            edges.append(ConceptEdge(disease, location, LOCATED_AT, SEED, 1.0, 0,
                                     f"the {location} is a typical site of {disease}"))
    edges += _hierarchy_edges(reader, document["hierarchy"])
    edges += _curated_edges(reader, document)
    return Ontology(tuple(reader.concepts), tuple(edges), sha256)


def _hierarchy_edges(reader: _SeedReader, value: object) -> list[ConceptEdge]:
    if not isinstance(value, dict):
        raise reader.fail("hierarchy",
                          f"expected a mapping of parent -> children, got {_shown(value)}")
    written: dict[str, tuple[str, ...]] = {}
    for parent, children in value.items():
        place = f"hierarchy.{parent}"
        reader.known(parent, place, (DISEASE,))
        written[parent] = tuple(
            reader.known(child, f"{place}[{index}]", (DISEASE,))
            for index, child in enumerate(reader.items(children, place))
        )
    # The labeller, the demo generator and this file must agree on what implies what.
    if {p: set(c) for p, c in written.items()} != {p: set(c) for p, c in HIERARCHY.items()}:
        raise reader.fail("hierarchy", f"expected CheXpert's hierarchy {dict(HIERARCHY)}, "
                          f"got {written}")
    return [
        ConceptEdge(child, parent, SUBTYPE_OF, SEED, 1.0, 0,
                    f"CheXpert hierarchy: {child} is a kind of {parent}")
        for parent, children in written.items() for child in children
    ]


def _curated_edges(reader: _SeedReader, document: Mapping) -> list[ConceptEdge]:
    ontology = Ontology(tuple(reader.concepts), (), "")
    edges, seen = [], {}
    for section, relation in _EDGE_SECTIONS.items():
        for index, entry in enumerate(reader.items(document[section], section)):
            place = f"{section}[{index}]"
            entry = reader.mapping(entry, place, _EDGE_FIELDS, required=_EDGE_FIELDS)
            between = reader.items(entry["between"], f"{place}.between")
            if len(between) != 2:
                raise reader.fail(f"{place}.between", f"expected two concepts, got {len(between)}")
            first, second = (
                reader.known(name, f"{place}.between[{i}]", (DISEASE, OBSERVATION, ATTRIBUTE))
                for i, name in enumerate(between)
            )
            if first == second:
                raise reader.fail(f"{place}.between",
                                  f"a concept cannot relate to itself ({first!r})")
            pair = frozenset((first, second))
            if pair in seen:
                raise reader.fail(f"{place}.between", f"{first!r} and {second!r} are already "
                                  f"related at {seen[pair]}")
            seen[pair] = place
            weight = entry["weight"]
            is_number = isinstance(weight, int | float) and not isinstance(weight, bool)
            if not is_number or not 0 < weight <= 1:
                raise reader.fail(f"{place}.weight", f"expected a number in (0, 1], got {weight!r}")
            rationale = reader.text(entry["rationale"], f"{place}.rationale")
            source, target = ontology.orient(first, second)
            edges.append(ConceptEdge(source, target, relation, SEED, float(weight), 0, rationale))
    return edges

