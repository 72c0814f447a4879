"""Relations learned from the data: how often concepts co-occur in studies beyond chance.

For a pair (x, y) over N studies, with x present in n_x, y in n_y and both in n_xy:

- lift = P(y | x) / P(y) = n_xy N / (n_x n_y); 1 is independence.
- its confidence interval is the Wilson score interval of P(y | x), divided by P(y) (P(y) is
  estimated from all N studies and taken as known, a close approximation when N >> n_x). x is
  the concept the interval conditions on: the attribute for an attribute-disease pair, the rarer
  one for a disease pair, so the interval is the wider, more cautious of the two.
- npmi = log(P(x, y) / (P(x) P(y))) / -log P(x, y), in [-1, 1]: -1 never together, 0
  independent, 1 always together. It is the edge weight.

Edges (all with provenance `statistics`), for pairs where x is present in at least `min_support`
studies:

- association: the interval lies above 1 and lift >= `association_lift`, with at least
  `min_cooccurrence` studies showing both; weight = npmi; support = n_xy.
- exclusion: the interval lies below `exclusion_lift` (strongly negative); weight = -npmi;
  support = n_x.
- irrelevance: the interval lies inside [1 / `irrelevance_band`, `irrelevance_band`]: enough
  data to say the two neither attract nor repel; weight = 1 - |npmi|; support = n_x.
- exclusion from contradictory attributes: diseases d1 and d2 learned to be associated with
  attributes a1 and a2 that the seed says contradict each other (hyperinflation against volume
  loss) exclude each other, unless the seed or the data associate the pair or one is a kind of
  the other; weight = the smaller of the two association weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import pandas as pd

from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    ATTRIBUTE,
    DISEASE,
    EXCLUSION,
    IRRELEVANCE,
    STATISTICS,
    SUBTYPE_OF,
    ConceptEdge,
    Ontology,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, DISEASES, LABEL_POSITIVE

# Bump when a formula or a default threshold changes: it is part of the asset's code version.
SCORING_VERSION = "1"

PAIR_COLUMNS = ("x", "y", "n_x", "n_y", "n_xy", "n_total", "lift", "ci_low", "ci_high", "npmi")


class PairRow(NamedTuple):
    """One row of `pair_statistics`."""

    x: str
    y: str
    n_x: int
    n_y: int
    n_xy: int
    n_total: int
    lift: float
    ci_low: float
    ci_high: float
    npmi: float


@dataclass(frozen=True)
class EdgeThresholds:
    """When a co-occurrence becomes an edge (see the module docstring)."""

    min_support: int = field(default=20, metadata={
        "help": "A concept must be present in this many studies before the data may relate it."})
    min_cooccurrence: int = field(default=5, metadata={
        "help": "Studies showing both concepts that an association needs."})
    association_lift: float = field(default=2.0, metadata={
        "help": "Lift an association needs (and its confidence interval must lie above 1)."})
    exclusion_lift: float = field(default=0.5, metadata={
        "help": "An exclusion's confidence interval for the lift must lie below this."})
    irrelevance_band: float = field(default=1.25, metadata={
        "help": "Irrelevance: the lift's interval lies within [1/band, band]."})
    confidence: float = field(default=0.95, metadata={
        "help": "Confidence level of the lift's Wilson interval."})


def wilson_interval(successes: np.ndarray, trials: np.ndarray, confidence: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a binomial proportion, elementwise; (0, 1) for 0 trials."""
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    trials = np.asarray(trials, dtype=float)
    safe = np.maximum(trials, 1.0)
    p = np.asarray(successes, dtype=float) / safe
    denominator = 1 + z**2 / safe
    centre = (p + z**2 / (2 * safe)) / denominator
    half = z * np.sqrt(p * (1 - p) / safe + z**2 / (4 * safe**2)) / denominator
    # At p = 0 or 1 the bound is exact in theory; rounding would leave a hair's breadth off it.
    low = np.where((trials > 0) & (p > 0), np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where((trials > 0) & (p < 1), np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def label_presence(studies: pd.DataFrame, labels: Sequence[str] = CHEXPERT_LABELS) -> pd.DataFrame:
    """One boolean column per label: positive (1.0) in the study. Uncertain counts as absent."""
    return pd.DataFrame({label: studies[label].to_numpy() == LABEL_POSITIVE for label in labels})


def normal_studies(studies: pd.DataFrame) -> int:
    """How many studies assert none of the 12 diseases (uncertain or device-only studies
    count): the studies a counterfactual can only add a finding to."""
    return int((~label_presence(studies, DISEASES).any(axis=1)).sum())


def studies_by_diseases(studies: pd.DataFrame) -> list[int]:
    """How many studies assert 0, 1, 2 ... of the 12 diseases (index: the number; uncertain
    counts as absent, so the first is `normal_studies`)."""
    per_study = label_presence(studies, DISEASES).sum(axis=1).to_numpy()
    if len(per_study) == 0:
        return []
    return [int(n) for n in np.bincount(per_study)]


def pair_statistics(x: pd.DataFrame, y: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Lift, its interval and npmi for every pair of a column of `x` and a column of `y`.

    Both frames hold one boolean row per study, in the same order. With `x` and `y` the same
    frame, each unordered pair appears once, conditioned on its rarer member.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} studies but y has {len(y)}; "
                         "their rows must be the same studies")
    same = x is y
    x_matrix = x.to_numpy(dtype=np.int64)
    y_matrix = y.to_numpy(dtype=np.int64)
    together = x_matrix.T @ y_matrix
    n_x, n_y = x_matrix.sum(axis=0), y_matrix.sum(axis=0)
    rows = []
    for i, x_name in enumerate(x.columns):
        for j, y_name in enumerate(y.columns):
            if same:
                if j <= i:
                    continue
                if (n_y[j], y_name) < (n_x[i], x_name):
                    rows.append((y_name, x_name, n_y[j], n_x[i], together[i, j]))
                    continue
            rows.append((x_name, y_name, n_x[i], n_y[j], together[i, j]))
    frame = pd.DataFrame(rows, columns=["x", "y", "n_x", "n_y", "n_xy"])
    return _with_scores(frame, len(x), confidence)


def _with_scores(frame: pd.DataFrame, n_total: int, confidence: float) -> pd.DataFrame:
    n_x = frame["n_x"].to_numpy(dtype=float)
    n_y = frame["n_y"].to_numpy(dtype=float)
    n_xy = frame["n_xy"].to_numpy(dtype=float)
    total = max(n_total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        base_rate = n_y / total
        lift = np.where((n_x > 0) & (n_y > 0), n_xy * total / (n_x * n_y), np.nan)
        low, high = wilson_interval(n_xy, n_x, confidence)
        ci_low = np.where(n_y > 0, low / base_rate, np.nan)
        ci_high = np.where(n_y > 0, high / base_rate, np.nan)
        p_xy = n_xy / total
        pmi = np.log(p_xy / ((n_x / total) * (n_y / total)))
        npmi = np.where(n_xy == 0, -1.0, np.where(p_xy >= 1, 1.0, pmi / -np.log(p_xy)))
    npmi = np.where((n_x > 0) & (n_y > 0), npmi, np.nan)
    return frame.assign(
        n_total=n_total, lift=lift, ci_low=ci_low, ci_high=ci_high, npmi=npmi,
    ).astype({"n_x": "int64", "n_y": "int64", "n_xy": "int64"})[list(PAIR_COLUMNS)]


def relation_of(row: PairRow, thresholds: EdgeThresholds) -> str | None:
    """Which relation, if any, one row of `pair_statistics` supports."""
    if row.n_x < thresholds.min_support or row.n_y == 0:
        return None
    if (row.ci_low > 1 and row.lift >= thresholds.association_lift
            and row.n_xy >= thresholds.min_cooccurrence):
        return ASSOCIATION
    if row.ci_high < thresholds.exclusion_lift:
        return EXCLUSION
    band = thresholds.irrelevance_band
    if 1 / band <= row.ci_low and row.ci_high <= band:
        return IRRELEVANCE
    return None


def _edge(ontology: Ontology, row: PairRow, relation: str, confidence: float) -> ConceptEdge:
    source, target = ontology.orient(row.x, row.y)
    weight = {ASSOCIATION: row.npmi, EXCLUSION: -row.npmi, IRRELEVANCE: 1 - abs(row.npmi)}[relation]
    support = row.n_xy if relation == ASSOCIATION else row.n_x
    rationale = (
        f"lift {row.lift:.2f} ({confidence:.0%} CI {row.ci_low:.2f}-{row.ci_high:.2f}): "
        f"{row.y} in {row.n_xy} of {row.n_x} studies with {row.x}, "
        f"{row.n_y} of {row.n_total} overall"
    )
    return ConceptEdge(source, target, relation, STATISTICS, round(float(weight), 6), int(support),
                       rationale, lift=round(float(row.lift), 6),
                       ci_low=round(float(row.ci_low), 6), ci_high=round(float(row.ci_high), 6))


def derive_edges(pairs: pd.DataFrame, ontology: Ontology, thresholds: EdgeThresholds | None = None
                 ) -> list[ConceptEdge]:
    """The association, exclusion and irrelevance edges that rows of `pair_statistics` support,
    plus the exclusions that contradictory attributes imply (see the module docstring)."""
    thresholds = thresholds or EdgeThresholds()
    edges = []
    for row in map(PairRow._make, pairs[list(PAIR_COLUMNS)].itertuples(index=False, name=None)):
        relation = relation_of(row, thresholds)
        if relation is not None:
            edges.append(_edge(ontology, row, relation, thresholds.confidence))
    return edges + contradiction_exclusions(edges, ontology)


def contradiction_exclusions(edges: Sequence[ConceptEdge], ontology: Ontology) -> list[ConceptEdge]:
    """Disease exclusions implied by learned disease-attribute associations whose attributes
    contradict each other in the seed."""
    kind = {concept.name: concept.kind for concept in ontology.concepts}
    shows: dict[str, dict[str, ConceptEdge]] = {}
    for edge in edges:
        if (edge.relation, edge.provenance, kind[edge.source], kind[edge.target]) == (
                ASSOCIATION, STATISTICS, DISEASE, ATTRIBUTE):
            shows.setdefault(edge.source, {})[edge.target] = edge
    associated = {frozenset((e.source, e.target)) for e in (*ontology.edges, *edges)
                  if e.relation == ASSOCIATION}
    related = associated | {frozenset((e.source, e.target)) for e in ontology.edges
                            if e.relation == SUBTYPE_OF}
    contradictions = [(e.source, e.target, e) for e in ontology.edges
                      if e.relation == EXCLUSION and kind[e.source] == ATTRIBUTE == kind[e.target]]
    implied: dict[tuple[str, str], ConceptEdge] = {}
    for first in sorted(shows):
        for second in sorted(shows):
            if first >= second or frozenset((first, second)) in related:
                continue
            pair = ontology.orient(first, second)
            for a1, a2, contradiction in contradictions:
                for sign, other_sign in ((a1, a2), (a2, a1)):
                    if sign in shows[pair[0]] and other_sign in shows[pair[1]]:
                        edge = _contradiction_edge(shows[pair[0]][sign], shows[pair[1]][other_sign],
                                                   contradiction)
                        if pair not in implied or edge.weight > implied[pair].weight:
                            implied[pair] = edge
    return [implied[pair] for pair in sorted(implied)]


def _contradiction_edge(first: ConceptEdge, second: ConceptEdge, contradiction: ConceptEdge
                        ) -> ConceptEdge:
    rationale = (
        f"{first.source} shows {first.target} and {second.source} shows {second.target} "
        f"(both learned), which contradict each other: {contradiction.rationale}"
    )
    return ConceptEdge(first.source, second.source, EXCLUSION, STATISTICS,
                       min(first.weight, second.weight), min(first.support, second.support),
                       rationale)


def learned_edges(concepts: pd.DataFrame, labels: pd.DataFrame, ontology: Ontology,
                  thresholds: EdgeThresholds | None = None
                  ) -> tuple[pd.DataFrame, list[ConceptEdge]]:
    """Pair statistics (attribute x label, then label x label) and the edges they support.

    `concepts` is `concept_presence` of the studies' findings, `labels` their `label_presence`;
    location columns are ignored (sites come from the seed).
    """
    thresholds = thresholds or EdgeThresholds()
    attributes = concepts[[name for name in ontology.names(ATTRIBUTE) if name in concepts]]
    pairs = pd.concat(
        [pair_statistics(attributes, labels, thresholds.confidence),
         pair_statistics(labels, labels, thresholds.confidence)],
        ignore_index=True,
    )
    return pairs, derive_edges(pairs, ontology, thresholds)
