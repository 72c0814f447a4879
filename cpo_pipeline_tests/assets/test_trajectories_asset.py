import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.testing.openai_server import Fault, FaultKind, OpenAICompatibleServer
from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt
from cpo_pipeline_tests.pipeline import materialize

API_KEY = "sk-must-never-be-written-anywhere"
TRAJECTORIES = ("counterfactual_trajectories",)


def _trajectories(data_root):
    return pq.read_table(data_root / "tables" / "counterfactual_trajectories.parquet").to_pandas()


def _materialization(result):
    return next(m for m in result.get_asset_materialization_events()
                if m.asset_key.path == ["counterfactual_trajectories"]).materialization


def _point_at(env, server):
    env.setenv("CPO_LLM_BASE_URL", server.base_url)
    env.setenv("CPO_LLM_MODEL", "cpo-test-model")
    env.setenv("CPO_LLM_API_KEY", API_KEY)


def test_offline_expert_materializes_and_a_rerun_is_a_no_op(demo_run, tmp_path):
    data_root = demo_run.copy_to(tmp_path / "data")
    table = _trajectories(data_root)
    again = materialize(data_root, TRAJECTORIES)

    assert again.success
    assert set(table["kind"]) == {"factual", "counterfactual"}
    assert (table.loc[table["kind"] == "counterfactual", "expert_backend"]
            == "offline-concept-graph").all()
    assert (table.groupby("study_id")["kind"].apply(lambda k: (k == "factual").sum()) == 1).all()
    assert _materialization(again).metadata["studies_generated_this_run"].value == 0
    assert _trajectories(data_root).equals(table)
    first = _materialization(demo_run.result)
    assert _materialization(again).tags["dagster/data_version"] == first.tags["dagster/data_version"]
    checks = demo_run.result.get_asset_check_evaluations()
    assert any(c.check_name == "dead_letters_below_bound" and c.passed for c in checks)
    assert "~~" in first.metadata["factual_vs_counterfactual"].value
    by_edit = first.metadata["counterfactuals_by_edit"].value
    assert set(by_edit) == {"insertion", "replacement", "deletion"}
    assert sum(by_edit.values()) == (table["kind"] == "counterfactual").sum()


def test_llm_expert_through_a_local_server_never_writes_the_api_key(demo_run, tmp_path, clean_env):
    data_root = demo_run.copy_to(tmp_path / "data")
    instance = dg.DagsterInstance.ephemeral()
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        _point_at(clean_env, server)
        result = materialize(data_root, TRAJECTORIES, instance=instance)
        keys_sent = {r.headers.get("authorization") for r in server.chat_requests}

    assert result.success
    assert keys_sent == {f"Bearer {API_KEY}"}
    table = _trajectories(data_root)
    counterfactual = table[table["kind"] == "counterfactual"]
    assert (counterfactual["expert_backend"] == "openai-compatible").all()
    assert (counterfactual["verdict"] == "accepted").mean() > 0.8
    written = [path.read_bytes() for path in data_root.rglob("*") if path.is_file()]
    assert not any(API_KEY.encode() in content for content in written)
    logged = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert "LLM expert:" in logged and API_KEY not in logged


def test_after_an_outage_a_rerun_retries_the_dead_letters_and_only_them(
    demo_run, tmp_path, clean_env
):
    data_root = demo_run.copy_to(tmp_path / "data")
    unavailable = Fault(FaultKind.HTTP_ERROR, status=503)
    # The endpoint goes down after its first 10 answers.
    with OpenAICompatibleServer(
        responder=answer_counterfactual_prompt,
        faults=lambda request: unavailable if request.index >= 10 else None,
    ) as server:
        _point_at(clean_env, server)
        outage = materialize(data_root, TRAJECTORIES, raise_on_error=False,
                             llm=LLMEndpointResource(max_attempts=1))
    during = _trajectories(data_root)
    dead = during[during["verdict"] == "dead_letter"]
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        _point_at(clean_env, server)
        recovered = materialize(data_root, TRAJECTORIES)
        asked_again = len(server.chat_requests)
    after = _trajectories(data_root)

    assert not outage.success and len(dead) > 0
    assert recovered.success
    assert 0 < asked_again <= 3 * len(dead)
    assert (after["verdict"] == "dead_letter").sum() == 0
    answered = during[during["verdict"] != "dead_letter"].set_index(["study_id", "target_disease"])
    kept = after.set_index(["study_id", "target_disease"]).loc[answered.index]
    pd.testing.assert_series_equal(kept["text"], answered["text"])


def test_a_study_without_labels_gets_no_trajectory_rather_than_no_finding(demo_run, tmp_path):
    data_root = demo_run.copy_to(tmp_path / "data")
    studies_path = data_root / "tables" / "cxr_studies.parquet"
    studies = pq.read_table(studies_path)
    unlabelled = studies.column("study_id")[0].as_py()
    frame = studies.to_pandas()
    frame.loc[0, list(CHEXPERT_LABELS)] = None
    frame.loc[0, "label_source"] = None
    pq.write_table(pa.Table.from_pandas(frame, schema=studies.schema, preserve_index=False),
                   studies_path)

    result = materialize(data_root, TRAJECTORIES)

    table = _trajectories(data_root)
    # The demo, like the real release, also has a few studies with no labeller row at all.
    labelled = frame["label_source"].notna()
    assert unlabelled not in set(table["study_id"])
    assert set(table["study_id"]) == set(frame.loc[labelled, "study_id"])
    assert _materialization(result).metadata["studies_without_labels"].value == (~labelled).sum()
