from datetime import UTC, datetime

import pandas as pd

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import ASSOCIATION, STATISTICS, ConceptEdge, load_ontology
from cpo_pipeline.counterfactuals.generation import (
    GenerationOptions,
    StudyInput,
    graph_context,
    plan_studies,
)
from cpo_pipeline.counterfactuals.reuse import (
    assemble,
    graph_use,
    input_key,
    plan_reuse,
    run_identity,
)
from cpo_pipeline.counterfactuals.verifier import VerifierConfig
from cpo_pipeline.llm.client import EndpointConfig
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

ONTOLOGY = load_ontology()
GRAPH = build_concept_graph(ONTOLOGY)
EXTRACTOR = ConceptExtractor(ONTOLOGY)
IDENTITY = {"backend": "openai-compatible", "model": "m", "prompt": "p"}
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def study(study_id, findings="Heart size is normal.", **positive):
    labels = dict.fromkeys(CHEXPERT_LABELS)
    labels.update({name.replace("_", " "): value for name, value in positive.items()})
    return StudyInput(10_000_000 + study_id, 50_000_000 + study_id, "train", findings, labels)


def reuse(studies, identity=IDENTITY, previous=None, graph=GRAPH):
    return plan_reuse(studies, plan_studies(studies, graph, EXTRACTOR, 2), graph, identity,
                      previous)


def rows(inputs, verdicts, identity=IDENTITY, graph=GRAPH):
    """An earlier table: per study a factual row and one counterfactual with the given verdict,
    keyed as a run with `identity` on `graph` keyed them."""
    keys = reuse(inputs, identity, graph=graph).keys
    records = []
    for item, verdict in zip(inputs, verdicts, strict=True):
        key = keys[item.study_id]
        records.append({"study_id": item.study_id, "kind": "factual", "target_disease": None,
                        "verdict": "accepted", "text": "f", "input_key": key})
        records.append({"study_id": item.study_id, "kind": "counterfactual",
                        "target_disease": "Edema", "verdict": verdict,
                        "text": None if verdict == "dead_letter" else "c", "input_key": key})
    return pd.DataFrame(records)


STUDIES = [study(1), study(2, Cardiomegaly=1.0), study(3)]
# Findings and labels whose plans cite different edges of the seed graph.
PLANNED_STUDIES = [
    study(11, "The heart is moderately enlarged. No pleural effusion or pneumothorax.",
          Cardiomegaly=1.0, Pleural_Effusion=0.0, Pneumothorax=0.0),
    study(12, "Small right apical pneumothorax with absent lung markings. Lungs otherwise clear.",
          Pneumothorax=1.0),
    study(13, "Moderate left pleural effusion. Heart size is normal.", Pleural_Effusion=1.0,
          Cardiomegaly=0.0),
]


def with_edge(edge):
    """The seed graph as a refresh rebuilds it, with one more learned edge."""
    return build_concept_graph(ONTOLOGY, [edge])


def reweighted(graph, source, target, key, weight):
    """`graph` with one edge's weight changed, as new studies change a learned edge's."""
    changed = graph.copy()
    changed[source][target][key]["weight"] = weight
    return changed


def test_a_first_run_generates_every_study():
    plan = reuse(STUDIES)

    assert plan.todo == STUDIES and plan.reused.empty and plan.retried == 0


def test_unchanged_studies_keep_their_rows_rejected_ones_included():
    plan = reuse(STUDIES, previous=rows(STUDIES, ["accepted", "rejected", "accepted"]))

    assert plan.todo == []
    assert sorted(set(plan.reused["study_id"])) == [s.study_id for s in STUDIES]


def test_a_study_with_a_dead_letter_is_generated_again_even_with_unchanged_inputs():
    plan = reuse(STUDIES, previous=rows(STUDIES, ["accepted", "dead_letter", "rejected"]))

    assert [s.study_id for s in plan.todo] == [STUDIES[1].study_id]
    assert plan.retried == 1
    assert STUDIES[1].study_id not in set(plan.reused["study_id"])


def test_changed_findings_labels_or_identity_regenerate():
    earlier = rows(STUDIES, ["accepted"] * 3)
    edited = [study(1, "Small left effusion."), study(2, Cardiomegaly=0.0), STUDIES[2]]

    assert [s.study_id for s in reuse(edited, previous=earlier).todo] == [
        STUDIES[0].study_id, STUDIES[1].study_id]
    assert reuse(STUDIES, {**IDENTITY, "model": "other"}, earlier).todo == STUDIES


def test_studies_whose_plans_are_unchanged_keep_their_rows_although_the_graph_changed():
    # A learned edge no study's plan touches: the graph (and its hash) change, the plans do not.
    grown = with_edge(ConceptEdge("Fracture", "pleural plaque", ASSOCIATION, STATISTICS,
                                  0.4, 12, "co-occurs in 12 studies"))
    earlier = rows(PLANNED_STUDIES, ["accepted"] * 3)

    plan = reuse(PLANNED_STUDIES, previous=earlier, graph=grown)

    assert grown.number_of_edges() == GRAPH.number_of_edges() + 1
    assert plan.todo == []
    assert plan.keys == reuse(PLANNED_STUDIES).keys
    pd.testing.assert_frame_equal(plan.reused, earlier)


def test_a_study_whose_plan_cites_a_reweighted_edge_is_generated_again_the_others_kept():
    # Only the pneumothorax study's deletion removes "absent lung markings" on this edge.
    lighter = reweighted(GRAPH, "Pneumothorax", "absent lung markings", "association/seed", 0.7)
    earlier = rows(PLANNED_STUDIES, ["accepted"] * 3)

    plan = reuse(PLANNED_STUDIES, previous=earlier, graph=lighter)

    assert [s.study_id for s in plan.todo] == [PLANNED_STUDIES[1].study_id]
    assert set(plan.reused["study_id"]) == {PLANNED_STUDIES[0].study_id,
                                            PLANNED_STUDIES[2].study_id}


def test_the_llm_key_holds_the_relations_its_prompt_quotes_the_offline_key_only_the_plan():
    [replacement, _deletion] = plan_studies(PLANNED_STUDIES[:1], GRAPH, EXTRACTOR, 2)[
        PLANNED_STUDIES[0].study_id]

    llm = graph_use([replacement], GRAPH, "openai-compatible")
    offline = graph_use([replacement], GRAPH, "offline-concept-graph")

    assert (replacement.source, replacement.target) == ("Cardiomegaly", "Edema")
    assert llm[0]["context"] == graph_context(GRAPH, replacement)
    assert "Edema --association (0.95)--> pulmonary vascular congestion" in llm[0]["context"]
    assert offline[0]["context"] is None
    assert offline[0]["plan"]["add"][0]["edges"][0]["weight"] == 0.95
    assert {key: value for key, value in llm[0].items() if key != "context"} == {
        key: value for key, value in offline[0].items() if key != "context"}


def test_assemble_keys_and_stamps_only_the_fresh_rows():
    earlier = rows(STUDIES, ["accepted", "dead_letter", "accepted"]).assign(
        created_at=pd.Timestamp("2026-11-01", tz="UTC"))
    plan = reuse(STUDIES, previous=earlier)
    fresh = rows([STUDIES[1]], ["accepted"]).drop(columns="input_key")

    table = assemble(plan, fresh, now=NOW)

    assert table["study_id"].tolist() == [s.study_id for s in STUDIES for _ in range(2)]
    assert (table["verdict"] == "accepted").all()
    stamped = table.set_index("study_id")["created_at"]
    assert (stamped.loc[STUDIES[1].study_id] == pd.Timestamp(NOW)).all()
    assert (stamped.loc[STUDIES[0].study_id] == pd.Timestamp("2026-11-01", tz="UTC")).all()
    assert table.set_index("study_id").loc[STUDIES[1].study_id, "input_key"].tolist() == [
        plan.keys[STUDIES[1].study_id]] * 2


def test_the_run_identity_changes_with_the_expert_model_and_the_verifier_bounds():
    offline = run_identity("offline-concept-graph", None, GenerationOptions(), "5")
    llm = run_identity("openai-compatible", EndpointConfig("http://127.0.0.1:8000/v1", "m"),
                       GenerationOptions(), "5")
    looser = run_identity("offline-concept-graph", None,
                          GenerationOptions(verifier=VerifierConfig(max_edit_fraction=0.9)), "5")
    freer = run_identity("offline-concept-graph", None,
                         GenerationOptions(verifier=VerifierConfig(min_unchanged_share=0.1)), "5")

    keys = {input_key(STUDIES[0], [], identity) for identity in (offline, llm, looser, freer)}
    assert len(keys) == 4
    assert (offline["model"], llm["model"]) == (None, "m")
