import numpy as np
import pandas as pd
import pytest

from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    EXCLUSION,
    IRRELEVANCE,
    SEED,
    STATISTICS,
    ConceptEdge,
    load_ontology,
)
from cpo_pipeline.concepts.statistics import (
    EdgeThresholds,
    PairRow,
    contradiction_exclusions,
    derive_edges,
    label_presence,
    learned_edges,
    normal_studies,
    pair_statistics,
    relation_of,
    studies_by_diseases,
    wilson_interval,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


def _present(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    column = np.zeros(n, dtype=bool)
    for start, stop in ranges:
        column[start:stop] = True
    return column


# 100 studies: Pneumonia in 5-29; air bronchogram in 0-19 (15 of its 20 with Pneumonia);
# hyperlucency in 50-89 (never with Pneumonia); volume loss in 0-19 and 30-69 (15 of its 60 with
# Pneumonia: the base rate of 25%).
N = 100
ATTRIBUTES = pd.DataFrame({
    "air bronchogram": _present(N, (0, 20)),
    "hyperlucency": _present(N, (50, 90)),
    "volume loss": _present(N, (0, 20), (30, 70)),
})
LABELS = pd.DataFrame({"Pneumonia": _present(N, (5, 30))})


def test_wilson_interval_of_fifteen_in_twenty():
    low, high = wilson_interval(np.array([15]), np.array([20]))

    assert low[0] == pytest.approx(0.531299, abs=1e-6)
    assert high[0] == pytest.approx(0.888138, abs=1e-6)


def test_wilson_interval_is_exact_at_zero_and_all():
    low, high = wilson_interval(np.array([0, 4]), np.array([4, 4]))

    assert low[0] == 0.0 and high[1] == 1.0


def test_pair_statistics_on_a_hand_built_table():
    pairs = pair_statistics(ATTRIBUTES, LABELS).set_index("x")

    bronchogram = pairs.loc["air bronchogram"]
    assert (bronchogram["n_x"], bronchogram["n_y"], bronchogram["n_xy"]) == (20, 25, 15)
    assert bronchogram["lift"] == pytest.approx(3.0)  # 15 * 100 / (20 * 25)
    assert bronchogram["ci_low"] == pytest.approx(0.531299 / 0.25, abs=1e-5)
    assert bronchogram["ci_high"] == pytest.approx(0.888138 / 0.25, abs=1e-5)
    assert bronchogram["npmi"] == pytest.approx(np.log(3.0) / -np.log(0.15))
    assert pairs.loc["hyperlucency", "lift"] == 0.0
    assert pairs.loc["hyperlucency", "npmi"] == -1.0
    assert pairs.loc["volume loss", "lift"] == pytest.approx(1.0)


def test_a_pair_of_labels_appears_once_conditioned_on_the_rarer():
    labels = pd.DataFrame({"Edema": _present(N, (0, 40)), "Cardiomegaly": _present(N, (0, 10))})

    pairs = pair_statistics(labels, labels)

    assert pairs[["x", "y", "n_x", "n_y", "n_xy"]].values.tolist() == [
        ["Cardiomegaly", "Edema", 10, 40, 10]]


def _row(**values) -> PairRow:
    base = PairRow(x="a", y="b", n_x=200, n_y=50, n_xy=0, n_total=1000, lift=1.0, ci_low=0.9,
                   ci_high=1.1, npmi=0.0)
    return base._replace(**values)


RELATIONS = {
    "significant and strong lift": (_row(n_xy=30, lift=3.0, ci_low=2.2, ci_high=3.9), ASSOCIATION),
    "lift too weak": (_row(n_xy=12, lift=1.2, ci_low=1.05, ci_high=1.4), None),
    "too few together": (_row(n_xy=4, lift=3.0, ci_low=1.2, ci_high=6.0), None),
    "strongly negative": (_row(lift=0.1, ci_low=0.02, ci_high=0.3), EXCLUSION),
    "independent and well measured": (_row(lift=1.0, ci_low=0.85, ci_high=1.15), IRRELEVANCE),
    "independent but vague": (_row(lift=1.0, ci_low=0.5, ci_high=1.6), None),
    "too little support": (_row(n_x=19, lift=1.0, ci_low=0.9, ci_high=1.1), None),
}


@pytest.mark.parametrize(("row", "relation"), RELATIONS.values(), ids=RELATIONS.keys())
def test_relation_of(row, relation):
    assert relation_of(row, EdgeThresholds()) == relation


def test_derived_edges_carry_weight_support_and_provenance(ontology):
    pairs = pair_statistics(ATTRIBUTES, LABELS)

    edges = {e.target: e for e in derive_edges(pairs, ontology, EdgeThresholds(min_support=20))}

    bronchogram = edges["air bronchogram"]
    assert (bronchogram.source, bronchogram.relation, bronchogram.provenance) == (
        "Pneumonia", ASSOCIATION, STATISTICS)
    assert bronchogram.weight == pytest.approx(0.579095, abs=1e-6)
    assert bronchogram.support == 15
    assert bronchogram.lift == 3.0
    assert bronchogram.rationale == (
        "lift 3.00 (95% CI 2.13-3.55): Pneumonia in 15 of 20 studies with air bronchogram, "
        "25 of 100 overall")
    assert (edges["hyperlucency"].relation, edges["hyperlucency"].weight,
            edges["hyperlucency"].support) == (EXCLUSION, 1.0, 40)
    assert "volume loss" not in edges  # lift 1, but 60 studies cannot pin it inside 0.8-1.25


def _learned(source: str, target: str, weight: float) -> ConceptEdge:
    return ConceptEdge(source, target, ASSOCIATION, STATISTICS, weight, 50, "learned")


def test_diseases_showing_contradictory_attributes_exclude_each_other(ontology):
    learned = [_learned("Atelectasis", "volume loss", 0.6),
               _learned("Pneumothorax", "hyperinflation", 0.4)]

    [edge] = contradiction_exclusions(learned, ontology)

    assert (edge.source, edge.target, edge.relation, edge.provenance, edge.weight) == (
        "Atelectasis", "Pneumothorax", EXCLUSION, STATISTICS, 0.4)
    assert edge.rationale.startswith(
        "Atelectasis shows volume loss and Pneumothorax shows hyperinflation (both learned)")


def test_associated_diseases_do_not_exclude_each_other_despite_contradictory_signs(ontology):
    # The seed associates Atelectasis with Pleural Effusion (passive atelectasis).
    learned = [_learned("Atelectasis", "volume loss", 0.6),
               _learned("Pleural Effusion", "hyperinflation", 0.4)]

    assert contradiction_exclusions(learned, ontology) == []


def test_seed_edges_are_not_evidence_for_contradictions(ontology):
    seeded = [ConceptEdge("Atelectasis", "volume loss", ASSOCIATION, SEED, 0.9, 0, "seed"),
              _learned("Pneumothorax", "hyperinflation", 0.4)]

    assert contradiction_exclusions(seeded, ontology) == []


def test_label_presence_counts_only_positive_labels():
    studies = pd.DataFrame({"Edema": [1.0, -1.0, 0.0, np.nan]})

    assert label_presence(studies, ["Edema"])["Edema"].tolist() == [True, False, False, False]


def test_normal_studies_assert_no_disease_though_they_may_hedge_one_or_carry_a_device():
    labels = dict.fromkeys(CHEXPERT_LABELS)
    studies = pd.DataFrame([
        {**labels, "No Finding": 1.0},
        {**labels, "Edema": -1.0},            # hedged only
        {**labels, "Support Devices": 1.0},   # a device is no disease
        {**labels, "Pneumothorax": 1.0},
    ])

    assert normal_studies(studies) == 3


def test_learning_is_deterministic(ontology):
    rng = np.random.default_rng(7)
    concepts = pd.DataFrame(rng.random((400, 3)) < 0.3,
                            columns=["air bronchogram", "meniscus sign", "right lower lobe"])
    labels = pd.DataFrame(rng.random((400, 2)) < 0.4, columns=["Pneumonia", "Edema"])
    labels["Pneumonia"] |= concepts["air bronchogram"]

    first = learned_edges(concepts, labels, ontology)
    second = learned_edges(concepts, labels, ontology)

    assert first[0].equals(second[0]) and first[1] == second[1]
    assert {e.target for e in first[1]} <= {"air bronchogram", "meniscus sign", "Pneumonia"}


def test_studies_are_counted_by_how_many_diseases_they_assert():
    studies = pd.DataFrame([
        dict.fromkeys(CHEXPERT_LABELS) | {"No Finding": 1.0},
        dict.fromkeys(CHEXPERT_LABELS) | {"Edema": 1.0, "Support Devices": 1.0},
        dict.fromkeys(CHEXPERT_LABELS) | {"Edema": 1.0, "Cardiomegaly": 1.0},
        dict.fromkeys(CHEXPERT_LABELS) | {"Pneumonia": -1.0},  # uncertain: no disease
    ])

    assert studies_by_diseases(studies) == [2, 1, 1]
    assert studies_by_diseases(studies.iloc[:0]) == []
