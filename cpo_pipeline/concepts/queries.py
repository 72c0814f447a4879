"""What the counterfactual expert asks the concept graph: which diseases to aim at, and how.

Both answers carry the edges that justify them, so a generated counterfactual can be traced to
the relations (and their provenance) it was built from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    ATTRIBUTE,
    DISEASE,
    EXCLUSION,
    LOCATED_AT,
    LOCATION,
    OBSERVATION,
    PROVENANCES,
    SUBTYPE_OF,
)
from cpo_pipeline.radiology.chexpert import LABEL_POSITIVE, LABEL_UNCERTAIN, NO_FINDING
from cpo_pipeline.storage import content_hash


@dataclass(frozen=True)
class EdgeRef:
    """One edge of the graph, as evidence."""

    source: str
    target: str
    relation: str
    provenance: str
    weight: float
    scope: str | None = None  # where an exclusion holds (`ConceptEdge.scope`)


@dataclass(frozen=True)
class Target:
    """A counterfactual target disease, its relevance score and the edges that add up to it."""

    disease: str
    score: float
    evidence: tuple[EdgeRef, ...]


@dataclass(frozen=True)
class PlanStep:
    """One edit of a plan: the concept it concerns and the edges that call for it."""

    concept: str
    edges: tuple[EdgeRef, ...]


def scoped_exclusion(step: PlanStep) -> str | None:
    """The scope of a negation every edge of which holds only at one place ("same side"),
    None when one holds anywhere."""
    scopes = {edge.scope for edge in step.edges}
    return scopes.pop() if len(scopes) == 1 and None not in scopes else None


@dataclass(frozen=True)
class PerturbationPlan:
    """How to edit a study's findings so that they show `target` instead of `sources`.

    `add`: attributes to state; `remove`: attributes to leave out; `negate`: attributes to state
    as absent; `keep_locations`: anatomical locations to keep, since the target shows there too.
    """

    sources: tuple[str, ...]
    target: str
    add: tuple[PlanStep, ...]
    remove: tuple[PlanStep, ...]
    negate: tuple[PlanStep, ...]
    keep_locations: tuple[PlanStep, ...]


_PRESENT = (LABEL_POSITIVE, LABEL_UNCERTAIN)


def strongest_edge(graph: nx.MultiDiGraph, first: str, second: str, relation: str) -> EdgeRef | None:
    """The heaviest `relation` edge between two concepts, in either direction (ties: the most
    trusted source)."""
    found = []
    for source, target in ((first, second), (second, first)):
        for data in (graph.get_edge_data(source, target) or {}).values():
            if data["relation"] == relation:
                found.append(EdgeRef(source, target, relation, data["provenance"],
                                     data["weight"], data.get("scope")))
    if not found:
        return None
    return min(found, key=lambda edge: (-edge.weight, PROVENANCES.index(edge.provenance)))


def _related(graph: nx.MultiDiGraph, concept: str, relation: str, kind: str) -> dict[str, EdgeRef]:
    """Every concept of `kind` that `relation` links to `concept`, with the strongest such edge."""
    neighbours = sorted(set(graph.successors(concept)) | set(graph.predecessors(concept)))
    found = {}
    for other in neighbours:
        if graph.nodes[other]["kind"] == kind:
            edge = strongest_edge(graph, concept, other, relation)
            if edge is not None:
                found[other] = edge
    return found


def _check_concepts(graph: nx.MultiDiGraph, names: Iterable[str], kinds: tuple[str, ...],
                    role: str) -> list[str]:
    names = list(names)
    for name in names:
        if name not in graph or graph.nodes[name]["kind"] not in kinds:
            raise ValueError(f"{role} {name!r} is not one of the concept graph's "
                             f"{' or '.join(kind + 's' for kind in kinds)}")
    return names


def _split_findings(graph: nx.MultiDiGraph, study_attributes: Iterable[str]
                    ) -> tuple[list[str], list[str]]:
    names = _check_concepts(graph, dict.fromkeys(study_attributes), (ATTRIBUTE, LOCATION),
                            "study attribute")
    attributes = [n for n in names if graph.nodes[n]["kind"] == ATTRIBUTE]
    return attributes, [n for n in names if graph.nodes[n]["kind"] == LOCATION]


def ancestors(graph: nx.MultiDiGraph, disease: str) -> set[str]:
    """Every disease `disease` is a subtype of (Pneumonia: Consolidation, Lung Opacity)."""
    found, frontier = set(), [disease]
    while frontier:
        child = frontier.pop()
        for _, parent, data in graph.out_edges(child, data=True):
            if data["relation"] == SUBTYPE_OF and parent not in found:
                found.add(parent)
                frontier.append(parent)
    return found


def _contradiction(graph: nx.MultiDiGraph, disease: str, attribute: str
                   ) -> tuple[float, tuple[EdgeRef, ...]]:
    """How strongly `disease` contradicts `attribute`: a direct exclusion edge, or the product of
    an association of the disease with an attribute and that attribute's exclusion of this one."""
    best: tuple[float, tuple[EdgeRef, ...]] = (0.0, ())
    direct = strongest_edge(graph, disease, attribute, EXCLUSION)
    if direct is not None:
        best = (direct.weight, (direct,))
    for shown, association in _related(graph, disease, ASSOCIATION, ATTRIBUTE).items():
        exclusion = strongest_edge(graph, shown, attribute, EXCLUSION)
        if exclusion is not None and association.weight * exclusion.weight > best[0]:
            best = (association.weight * exclusion.weight, (association, exclusion))
    return best


def choose_counterfactual_targets(
    graph: nx.MultiDiGraph,
    study_labels: Mapping[str, float | None],
    study_attributes: Iterable[str],
    k: int = 2,
    study_key: object = None,
    balancing: int | None = None,
) -> list[Target]:
    """The `k` diseases most relevant as counterfactual targets for one study.

    Candidates are the 12 diseases the study does not carry (label neither 1.0 nor -1.0) and that
    are not implied by one it carries (a Pneumonia study is already a Lung Opacity study). With
    C the study's present labels (diseases and observations, positive or uncertain) and A its
    attributes (attribute names from `study_attributes`; locations there are ignored here), a
    candidate d scores

        score(d) = sum over c in C of  assoc(d, c) + excl(d, c)
                 + sum over a in A of  assoc(d, a) + contra(d, a)
        contra(d, a) = max(excl(d, a), max over attributes b of assoc(d, b) * excl(b, a))

    where assoc / excl is the weight of the strongest association / exclusion edge between the
    two (0 if none; any provenance). So d scores for sharing the study's findings and for
    contradicting them, directly or through a sign of its own (consolidation's airspace opacity
    against pneumothorax's absent lung markings). Candidates scoring 0 are not ranked, so fewer
    than `k` may come back.

    With a `study_key` (the study id), ties among the related go to a per-study pseudo-random
    order (the sha256 of key and disease), and the last `balancing` targets (default: one when
    `k` >= 2) are drawn among all the candidates not already chosen, related or not (the
    balancing slots), each with probability proportional to its `balancing_weights` (a
    weighted draw without replacement, Efraimidis-Spirakis, on the study's own hash): the
    most related diseases come first, a disease is added about as often as studies can lose
    it, and every disease is targeted over a dataset (ranking alone never reached Pleural
    Other or Enlarged Cardiomediastinum on the demo). A study with no related candidate gets
    no target unless every slot is a balancing one. A study's targets depend on nothing but
    its own inputs and the graph, so incremental re-runs stay valid. Without a key, the `k`
    best go, ties to the disease present in more studies, then to the name.
    """
    attributes, _ = _split_findings(graph, study_attributes)
    present = [label for label, value in study_labels.items() if value in _PRESENT]
    _check_concepts(graph, present, (DISEASE, OBSERVATION), "study label")
    implied = set().union(*(ancestors(graph, label) for label in present))
    candidates = [
        name for name, kind in graph.nodes(data="kind")
        if kind == DISEASE and name not in present and name not in implied
    ]
    targets = []
    for disease in candidates:
        shared = [strongest_edge(graph, disease, concept, relation)
                  for concept in present for relation in (ASSOCIATION, EXCLUSION)]
        shared += [strongest_edge(graph, disease, a, ASSOCIATION) for a in attributes]
        evidence = [edge for edge in shared if edge is not None]
        score = sum(edge.weight for edge in evidence)
        for attribute in attributes:
            strength, edges = _contradiction(graph, disease, attribute)
            score += strength
            evidence.extend(edges)
        targets.append(Target(disease, round(score, 6), tuple(evidence)))
    related = [target for target in targets if target.score > 0]
    if study_key is None:
        related.sort(key=lambda t: (-t.score, -graph.nodes[t.disease]["study_count"], t.disease))
        return related[:k]

    weights = balancing_weights(graph)

    def draw(target: Target, weight: float) -> float:
        # Efraimidis-Spirakis: the largest u ** (1 / w) first is a draw without replacement
        # with probabilities proportional to w; u is the study's own, so reruns agree.
        u = (int(content_hash([str(study_key), target.disease])[:12], 16) + 0.5) / 16 ** 12
        return -u ** (1.0 / weight)

    if balancing is None:
        balancing = 1 if k >= 2 else 0
    if not related and balancing < k:
        return []
    # The related slots: the most related first (ties in the study's own random order).
    related.sort(key=lambda t: (-t.score, draw(t, 1.0)))
    ranked = related[:k - balancing]
    chosen = {target.disease for target in ranked}
    # The last `balancing` targets are drawn among every other candidate, by balance alone.
    others = sorted((target for target in targets if target.disease not in chosen),
                    key=lambda t: draw(t, weights[t.disease]))
    return [*ranked, *others[:k - len(ranked)]]


# The share of the disease studies every disease weighs as a target on top of its own count:
# a rare disease is still drawn (at least ~2% of targets on the demo), a common one is drawn
# about as often as studies carrying it lose it to a deletion or a replacement.
BALANCING_FLOOR = 0.04


def balancing_weights(graph: nx.MultiDiGraph) -> dict[str, float]:
    """How often each disease should be a counterfactual target, relative to the others: the
    studies that carry it (`study_count`, how often it can be taken away) plus
    `BALANCING_FLOOR` of all diseases' counts (so that every disease is targeted). Drawing
    targets this way keeps each disease added about as often as it is removed, so the words a
    disease is stated in do not mark one side of a pair; with no counts every disease weighs
    the same."""
    counts = {name: float(data.get("study_count") or 0)
              for name, data in graph.nodes(data=True) if data["kind"] == DISEASE}
    total = sum(counts.values())
    studies = float(graph.graph.get("studies") or 0)
    if total == 0 or studies == 0:
        return dict.fromkeys(counts, 1.0)
    # A disease can be a target only where it is absent: its odds, not its share.
    odds = {name: count / max(studies - count, 1.0) for name, count in counts.items()}
    floor = BALANCING_FLOOR * sum(odds.values())
    return {name: value + floor for name, value in odds.items()}


def perturbation_plan(
    graph: nx.MultiDiGraph,
    source_diseases: str | Iterable[str],
    target: str,
    study_attributes: Iterable[str],
    max_added: int = 2,
) -> PerturbationPlan:
    """The minimal edit of a study's findings from its disease(s) toward `target`.

    - negate: study attributes the target excludes, or that an added attribute excludes;
    - remove: other study attributes associated with a source disease but not with the target
      (a source the target implies, like Lung Opacity for Atelectasis, counts as no source);
    - add: up to `max_added` attributes associated with the target that the study lacks,
      strongest first, skipping those a source disease is at least as associated with (they
      would not move the diagnosis);
    - keep_locations: the study's locations that are typical sites of the target.
    """
    sources = (source_diseases,) if isinstance(source_diseases, str) else tuple(source_diseases)
    _check_concepts(graph, sources, (DISEASE, OBSERVATION), "source disease")
    _check_concepts(graph, [target], (DISEASE,), "target")
    attributes, locations = _split_findings(graph, study_attributes)

    # A source the target implies stays true (Atelectasis is still a Lung Opacity): not edited.
    edited = [source for source in sources if source not in ancestors(graph, target)]
    source_signs = [_related(graph, source, ASSOCIATION, ATTRIBUTE) for source in edited]
    target_signs = _related(graph, target, ASSOCIATION, ATTRIBUTE)
    add = []
    strongest_first = sorted(target_signs.items(), key=lambda item: (-item[1].weight, item[0]))
    for attribute, edge in strongest_first:
        if len(add) == max_added:
            break
        if attribute in attributes or any(
            signs[attribute].weight >= edge.weight for signs in source_signs if attribute in signs
        ):
            continue
        add.append(PlanStep(attribute, (edge,)))

    negate, remove = [], []
    for attribute in sorted(attributes):
        contradicting = [strongest_edge(graph, target, attribute, EXCLUSION)] + [
            strongest_edge(graph, step.concept, attribute, EXCLUSION) for step in add
        ]
        contradicting = [edge for edge in contradicting if edge is not None]
        supporting = [signs[attribute] for signs in source_signs if attribute in signs]
        if contradicting:
            negate.append(PlanStep(attribute, tuple(contradicting)))
        elif supporting and attribute not in target_signs:
            remove.append(PlanStep(attribute, tuple(supporting)))

    keep = []
    for location in sorted(locations):
        site = strongest_edge(graph, target, location, LOCATED_AT)
        if site is not None:
            keep.append(PlanStep(location, (site,)))
    return PerturbationPlan(sources, target, tuple(add), tuple(remove), tuple(negate), tuple(keep))


def choose_deleted(
    graph: nx.MultiDiGraph, diagnoses: Iterable[str], study_key: object, avoid: str | None = None
) -> str | None:
    """The diagnosis a deletion counterfactual denies: drawn per study (the sha256 of key and
    disease) among the study's positive diseases that no other one implies (Lung Opacity stays
    while Pneumonia does), `avoid` (another counterfactual's source) only if it is the last;
    None for a normal study."""
    diagnoses = [d for d in diagnoses if d != NO_FINDING]
    implied = set().union(*(ancestors(graph, d) for d in diagnoses))
    deletable = [d for d in diagnoses if d not in implied]
    preferred = [d for d in deletable if d != avoid] or deletable
    if not preferred:
        return None
    return min(preferred, key=lambda d: content_hash([str(study_key), "delete", d]))


def deletion_plan(
    graph: nx.MultiDiGraph, source: str, kept: Iterable[str], study_attributes: Iterable[str]
) -> PerturbationPlan:
    """The minimal edit that deletes `source`, toward "No Finding" for it: the study attributes
    associated with the source and with none of the `kept` diseases go with it (`remove`);
    nothing is added or negated."""
    _check_concepts(graph, [source], (DISEASE,), "deleted disease")
    kept = _check_concepts(graph, [d for d in kept if d != NO_FINDING], (DISEASE, OBSERVATION),
                           "kept disease")
    attributes, _ = _split_findings(graph, study_attributes)
    signs = _related(graph, source, ASSOCIATION, ATTRIBUTE)
    kept_signs = [_related(graph, disease, ASSOCIATION, ATTRIBUTE) for disease in kept]
    remove = tuple(PlanStep(attribute, (signs[attribute],)) for attribute in sorted(attributes)
                   if attribute in signs and not any(attribute in other for other in kept_signs))
    return PerturbationPlan((source,), NO_FINDING, (), remove, (), ())
