import dagster as dg
import pyarrow.parquet as pq
import pytest

from cpo_pipeline.definitions import defs
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.testing.openai_server import OpenAICompatibleServer
from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt

API_KEY = "sk-must-never-be-written-anywhere"
ASSETS = ("cxr_studies", "concept_graph", "counterfactual_trajectories")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MIMIC_CXR_ROOT", "MIMIC_CXR_JPG_ROOT", "CPO_DATA_ROOT", "CPO_LLM_BASE_URL",
                 "CPO_LLM_MODEL", "CPO_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def materialize(data_root, selection=ASSETS, instance=None):
    return dg.materialize(
        [defs.get_assets_def(name) for name in ASSETS],
        resources={"settings": PipelineSettings(data_root=str(data_root)),
                   "io_manager": ParquetIOManager(data_root=str(data_root)),
                   "llm": LLMEndpointResource()},
        selection=list(selection),
        instance=instance,
    )


def _trajectories(data_root):
    return pq.read_table(data_root / "tables" / "counterfactual_trajectories.parquet").to_pandas()


def _materialization(result):
    return next(m for m in result.get_asset_materialization_events()
                if m.asset_key.path == ["counterfactual_trajectories"]).materialization


def test_offline_expert_materializes_and_a_rerun_is_a_no_op(tmp_path, clean_env):
    first = materialize(tmp_path)
    table = _trajectories(tmp_path)
    again = materialize(tmp_path, selection=("counterfactual_trajectories",))

    assert first.success and again.success
    assert set(table["kind"]) == {"factual", "counterfactual"}
    assert (table.loc[table["kind"] == "counterfactual", "expert_backend"]
            == "offline-concept-graph").all()
    assert (table.groupby("study_id")["kind"].apply(lambda k: (k == "factual").sum()) == 1).all()
    assert _materialization(again).metadata["studies_generated_this_run"].value == 0
    assert _trajectories(tmp_path).equals(table)
    assert (_materialization(again).tags["dagster/data_version"]
            == _materialization(first).tags["dagster/data_version"])
    check = first.get_asset_check_evaluations()
    assert any(c.check_name == "dead_letters_below_bound" and c.passed for c in check)
    assert "~~" in _materialization(first).metadata["factual_vs_counterfactual"].value


def test_llm_expert_through_a_local_server_never_writes_the_api_key(tmp_path, clean_env):
    materialize(tmp_path, selection=("cxr_studies", "concept_graph"))
    instance = dg.DagsterInstance.ephemeral()
    with OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        clean_env.setenv("CPO_LLM_BASE_URL", server.base_url)
        clean_env.setenv("CPO_LLM_MODEL", "cpo-test-model")
        clean_env.setenv("CPO_LLM_API_KEY", API_KEY)
        result = materialize(tmp_path, selection=("counterfactual_trajectories",),
                             instance=instance)
        keys_sent = {r.headers.get("authorization") for r in server.chat_requests}

    assert result.success
    assert keys_sent == {f"Bearer {API_KEY}"}
    table = _trajectories(tmp_path)
    counterfactual = table[table["kind"] == "counterfactual"]
    assert (counterfactual["expert_backend"] == "openai-compatible").all()
    assert (counterfactual["verdict"] == "accepted").mean() > 0.8
    written = [path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()]
    assert not any(API_KEY.encode() in content for content in written)
    logged = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert "LLM expert:" in logged and API_KEY not in logged
