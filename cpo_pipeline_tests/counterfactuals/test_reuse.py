from datetime import UTC, datetime

import pandas as pd

from cpo_pipeline.counterfactuals.generation import GenerationOptions, StudyInput
from cpo_pipeline.counterfactuals.reuse import assemble, input_key, plan_reuse, run_identity
from cpo_pipeline.counterfactuals.verifier import VerifierConfig
from cpo_pipeline.llm.client import EndpointConfig
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

IDENTITY = {"graph": "g1", "backend": "openai-compatible", "model": "m", "prompt": "p"}
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def study(study_id, findings="Heart size is normal.", **positive):
    labels = dict.fromkeys(CHEXPERT_LABELS)
    labels.update(positive)
    return StudyInput(10_000_000 + study_id, 50_000_000 + study_id, "train", findings, labels)


def rows(inputs, verdicts, identity=IDENTITY):
    """An earlier table: per study a factual row and one counterfactual with the given verdict."""
    records = []
    for item, verdict in zip(inputs, verdicts, strict=True):
        key = input_key(item, identity)
        records.append({"study_id": item.study_id, "kind": "factual", "target_disease": None,
                        "verdict": "accepted", "text": "f", "input_key": key})
        records.append({"study_id": item.study_id, "kind": "counterfactual",
                        "target_disease": "Edema", "verdict": verdict,
                        "text": None if verdict == "dead_letter" else "c", "input_key": key})
    return pd.DataFrame(records)


STUDIES = [study(1), study(2, Cardiomegaly=1.0), study(3)]


def test_a_first_run_generates_every_study():
    plan = plan_reuse(STUDIES, IDENTITY, None)

    assert plan.todo == STUDIES and plan.reused.empty and plan.retried == 0


def test_unchanged_studies_keep_their_rows_rejected_ones_included():
    plan = plan_reuse(STUDIES, IDENTITY, rows(STUDIES, ["accepted", "rejected", "accepted"]))

    assert plan.todo == []
    assert sorted(set(plan.reused["study_id"])) == [s.study_id for s in STUDIES]


def test_a_study_with_a_dead_letter_is_generated_again_even_with_unchanged_inputs():
    plan = plan_reuse(STUDIES, IDENTITY, rows(STUDIES, ["accepted", "dead_letter", "rejected"]))

    assert [s.study_id for s in plan.todo] == [STUDIES[1].study_id]
    assert plan.retried == 1
    assert STUDIES[1].study_id not in set(plan.reused["study_id"])


def test_changed_findings_labels_or_identity_regenerate():
    earlier = rows(STUDIES, ["accepted"] * 3)
    edited = [study(1, "Small left effusion."), study(2, Cardiomegaly=0.0), STUDIES[2]]

    assert [s.study_id for s in plan_reuse(edited, IDENTITY, earlier).todo] == [
        STUDIES[0].study_id, STUDIES[1].study_id]
    assert plan_reuse(STUDIES, {**IDENTITY, "model": "other"}, earlier).todo == STUDIES


def test_assemble_keys_and_stamps_only_the_fresh_rows():
    earlier = rows(STUDIES, ["accepted", "dead_letter", "accepted"]).assign(
        created_at=pd.Timestamp("2026-11-01", tz="UTC"))
    plan = plan_reuse(STUDIES, IDENTITY, earlier)
    fresh = rows([STUDIES[1]], ["accepted"]).drop(columns="input_key")

    table = assemble(plan, fresh, now=NOW)

    assert table["study_id"].tolist() == [s.study_id for s in STUDIES for _ in range(2)]
    assert (table["verdict"] == "accepted").all()
    stamped = table.set_index("study_id")["created_at"]
    assert (stamped.loc[STUDIES[1].study_id] == pd.Timestamp(NOW)).all()
    assert (stamped.loc[STUDIES[0].study_id] == pd.Timestamp("2026-11-01", tz="UTC")).all()
    assert table.set_index("study_id").loc[STUDIES[1].study_id, "input_key"].tolist() == [
        input_key(STUDIES[1], IDENTITY)] * 2


def test_the_run_identity_changes_with_the_expert_model_and_the_verifier_bound():
    offline = run_identity("g1", "offline-concept-graph", None, GenerationOptions(), "5")
    llm = run_identity("g1", "openai-compatible", EndpointConfig("http://127.0.0.1:8000/v1", "m"),
                       GenerationOptions(), "5")
    looser = run_identity("g1", "offline-concept-graph", None,
                          GenerationOptions(verifier=VerifierConfig(max_edit_fraction=0.9)), "5")

    keys = {input_key(STUDIES[0], identity) for identity in (offline, llm, looser)}
    assert len(keys) == 3
    assert (offline["model"], llm["model"]) == (None, "m")
