from collections import Counter

import pytest

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.concepts.queries import (
    BALANCING_FLOOR,
    EdgeRef,
    PerturbationPlan,
    PlanStep,
    balancing_weights,
    choose_counterfactual_targets,
    choose_deleted,
    deletion_plan,
    perturbation_plan,
)
from cpo_pipeline.radiology.chexpert import DISEASES


@pytest.fixture(scope="module")
def graph():
    return build_concept_graph(load_ontology())


def seed(source: str, target: str, relation: str, weight: float,
         scope: str | None = None) -> EdgeRef:
    return EdgeRef(source, target, relation, "seed", weight, scope)


def _names(steps: tuple[PlanStep, ...]) -> list[str]:
    return [step.concept for step in steps]


PNEUMOTHORAX_SIGNS = ["visceral pleural line", "absent lung markings", "hyperlucency",
                      "lung apices"]


def test_a_cardiomegaly_study_is_aimed_at_edema_then_pleural_effusion(graph):
    targets = choose_counterfactual_targets(
        graph, {"Cardiomegaly": 1.0, "Pneumothorax": 0.0}, ["enlarged cardiac silhouette"])

    assert [(t.disease, t.score) for t in targets] == [("Edema", 0.8), ("Pleural Effusion", 0.7)]
    assert targets[0].evidence == (seed("Cardiomegaly", "Edema", "association", 0.8),)


def test_from_cardiomegaly_to_edema_add_congestion_and_kerley_lines(graph):
    plan = perturbation_plan(graph, "Cardiomegaly", "Edema", ["enlarged cardiac silhouette"])

    assert plan == PerturbationPlan(
        sources=("Cardiomegaly",),
        target="Edema",
        add=(PlanStep("pulmonary vascular congestion",
                      (seed("Edema", "pulmonary vascular congestion", "association", 0.95),)),
             PlanStep("Kerley B lines", (seed("Edema", "Kerley B lines", "association", 0.9),))),
        remove=(PlanStep("enlarged cardiac silhouette", (
            seed("Cardiomegaly", "enlarged cardiac silhouette", "association", 0.95),)),),
        negate=(),
        keep_locations=(),
    )


def test_from_cardiomegaly_to_effusion_add_a_blunted_angle_and_a_meniscus(graph):
    plan = perturbation_plan(graph, "Cardiomegaly", "Pleural Effusion",
                             ["enlarged cardiac silhouette"])

    assert _names(plan.add) == ["blunted costophrenic angle", "meniscus sign"]


def test_a_pneumothorax_study_is_aimed_at_diseases_whose_signs_contradict_its_own(graph):
    targets = choose_counterfactual_targets(graph, {"Pneumothorax": 1.0}, PNEUMOTHORAX_SIGNS)

    assert [(t.disease, t.score) for t in targets] == [("Pleural Effusion", 0.63),
                                                       ("Consolidation", 0.54)]
    assert targets[0].evidence == (
        seed("Pleural Effusion", "opacified hemithorax", "association", 0.7),
        seed("hyperlucency", "opacified hemithorax", "exclusion", 0.9, "same side"),
    )


def test_from_pneumothorax_to_consolidation_negate_what_the_new_opacity_contradicts(graph):
    plan = perturbation_plan(graph, "Pneumothorax", "Consolidation", PNEUMOTHORAX_SIGNS)

    assert _names(plan.add) == ["air bronchogram", "airspace opacity"]
    assert plan.negate == (PlanStep("absent lung markings", (
        seed("absent lung markings", "airspace opacity", "exclusion", 0.6, "same side"),)),)
    assert _names(plan.remove) == ["hyperlucency", "visceral pleural line"]
    assert plan.keep_locations == ()  # consolidation does not sit at the apex


def test_from_pneumonia_to_atelectasis_keep_the_lobe_and_leave_lung_opacity_alone(graph):
    labels = {"Pneumonia": 1.0, "Consolidation": 1.0, "Lung Opacity": 1.0}
    findings = ["air bronchogram", "airspace opacity", "silhouette sign", "right lower lobe"]

    [first, second] = choose_counterfactual_targets(graph, labels, findings)
    plan = perturbation_plan(graph, ["Pneumonia", "Consolidation", "Lung Opacity"],
                             "Atelectasis", findings)

    assert (first.disease, second.disease) == ("Atelectasis", "Pleural Effusion")
    assert _names(plan.add) == ["volume loss", "fissure displacement"]
    assert plan.remove == (
        PlanStep("air bronchogram", (
            seed("Pneumonia", "air bronchogram", "association", 0.85),
            seed("Consolidation", "air bronchogram", "association", 0.95))),
        PlanStep("airspace opacity", (
            seed("Pneumonia", "airspace opacity", "association", 0.85),
            seed("Consolidation", "airspace opacity", "association", 0.9))),
    )
    assert plan.keep_locations == (PlanStep("right lower lobe", (
        seed("Atelectasis", "right lower lobe", "located_at", 1.0),)),)


def test_a_hyperinflated_normal_study_is_aimed_at_atelectasis_which_negates_hyperinflation(graph):
    [first, _] = choose_counterfactual_targets(graph, {"No Finding": 1.0}, ["hyperinflation"])
    plan = perturbation_plan(graph, "No Finding", "Atelectasis", ["hyperinflation"])

    assert first.disease == "Atelectasis"
    assert plan.negate == (PlanStep("hyperinflation", (
        seed("Atelectasis", "hyperinflation", "exclusion", 0.8, "same side"),
        seed("hyperinflation", "volume loss", "exclusion", 0.9, "same side"),
    )),)


def test_diseases_the_study_carries_or_implies_are_never_targets(graph):
    labels = {"Pneumonia": 1.0, "Edema": -1.0}

    targets = choose_counterfactual_targets(graph, labels, ["airspace opacity"], k=12)

    assert {t.disease for t in targets}.isdisjoint(
        {"Pneumonia", "Edema", "Consolidation", "Lung Opacity"})


def test_a_study_nothing_relates_to_gets_no_target(graph):
    assert choose_counterfactual_targets(graph, {}, []) == []


def test_an_unknown_attribute_is_refused_by_name(graph):
    with pytest.raises(ValueError, match="study attribute 'crazy paving' is not one of the concept "
                                         "graph's attributes or locations"):
        choose_counterfactual_targets(graph, {"Edema": 1.0}, ["crazy paving"])


def test_a_target_must_be_a_disease(graph):
    with pytest.raises(ValueError, match="target 'No Finding' is not one of the concept graph's "
                                         "diseases"):
        perturbation_plan(graph, "Edema", "No Finding", [])


def test_without_a_study_key_ties_of_a_normal_study_go_by_prevalence_then_name(graph):
    targets = choose_counterfactual_targets(graph, {"No Finding": 1.0}, [], k=12)

    assert {t.score for t in targets} == {1.0} and len(targets) == 12
    assert [t.disease for t in targets[:2]] == ["Atelectasis", "Cardiomegaly"]


def test_with_study_keys_tied_targets_spread_over_every_disease_and_repeat_per_study(graph):
    picks = [t.disease for key in range(50_000_000, 50_000_600)
             for t in choose_counterfactual_targets(graph, {"No Finding": 1.0}, [], k=2,
                                                    study_key=key)]
    again = choose_counterfactual_targets(graph, {"No Finding": 1.0}, [], k=2,
                                          study_key=50_000_000)

    shares = {disease: picks.count(disease) / len(picks) for disease in set(picks)}
    assert len(shares) == 12
    assert min(shares.values()) > 0.05 and max(shares.values()) < 0.12  # 1/12 = 0.083
    assert [t.disease for t in again] == picks[:2]


def test_a_study_key_keeps_the_strongest_target_first_and_draws_the_last_among_the_rest(graph):
    labels = {"Cardiomegaly": 1.0, "Pneumothorax": 0.0}
    ranked = [t.disease for t in choose_counterfactual_targets(
        graph, labels, ["enlarged cardiac silhouette"], k=12)]

    seconds = set()
    for key in range(50_000_000, 50_000_050):
        targets = choose_counterfactual_targets(graph, labels, ["enlarged cardiac silhouette"],
                                                study_key=key)
        assert targets[0].disease == ranked[0] == "Edema"
        assert targets[1].disease not in ("Edema", "Cardiomegaly")
        seconds.add(targets[1].disease)

    # The balancing slot reaches beyond the next most related, even diseases unrelated to it.
    assert len(seconds) >= 6
    assert seconds - set(ranked)


def test_a_deletion_never_takes_a_finding_another_one_is_a_kind_of(graph):
    # Pneumonia is a Lung Opacity: the opacity cannot go while the pneumonia stays.
    for key in range(20):
        assert choose_deleted(graph, ["Lung Opacity", "Pneumonia"], key) == "Pneumonia"
    assert choose_deleted(graph, ["No Finding"], 1) is None


def test_a_deletion_avoids_the_source_another_counterfactual_replaces_unless_it_is_the_last(graph):
    diseases = ["Cardiomegaly", "Pleural Effusion"]
    drawn = {choose_deleted(graph, diseases, key) for key in range(40)}
    assert drawn == set(diseases)
    assert {choose_deleted(graph, diseases, key, avoid="Cardiomegaly")
            for key in range(40)} == {"Pleural Effusion"}
    assert choose_deleted(graph, ["Cardiomegaly"], 3, avoid="Cardiomegaly") == "Cardiomegaly"


def test_a_deletion_plan_removes_signs_of_the_source_that_no_kept_disease_shows(graph):
    # The silhouette sign shows atelectasis too, so it stays with it.
    plan = deletion_plan(graph, "Pleural Effusion", ["Atelectasis"],
                         ["meniscus sign", "silhouette sign", "volume loss"])

    assert (plan.sources, plan.target) == (("Pleural Effusion",), "No Finding")
    assert _names(plan.remove) == ["meniscus sign"]
    assert plan.add == plan.negate == plan.keep_locations == ()


def test_balancing_draws_follow_how_often_a_disease_can_be_taken_away_with_a_floor():
    counts = dict.fromkeys(DISEASES, 50) | {"Atelectasis": 400, "Pleural Other": 4}
    graph = build_concept_graph(load_ontology(), study_counts=counts, studies=1000)
    weights = balancing_weights(graph)

    # Odds of the disease among the studies, plus 4% of their sum for every disease.
    floor = BALANCING_FLOOR * (400 / 600 + 4 / 996 + 10 * 50 / 950)
    assert weights["Atelectasis"] == pytest.approx(400 / 600 + floor)
    assert weights["Pleural Other"] == pytest.approx(4 / 996 + floor)
    drawn = Counter(
        choose_counterfactual_targets(graph, {"No Finding": 1.0}, [], k=1, study_key=key,
                                      balancing=1)[0].disease
        for key in range(3000))
    share = {disease: drawn[disease] / 3000 for disease in DISEASES}
    expected = {d: w / sum(weights.values()) for d, w in weights.items()}
    for disease in DISEASES:
        assert share[disease] == pytest.approx(expected[disease], abs=0.03), disease
    assert min(share.values()) > 0.01  # the rarest is still targeted


def test_without_study_counts_every_disease_weighs_the_same():
    weights = balancing_weights(build_concept_graph(load_ontology()))

    assert set(weights) == set(DISEASES) and len(set(weights.values())) == 1
