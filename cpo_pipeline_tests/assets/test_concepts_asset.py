import json
import re
import shutil

import dagster as dg
import pyarrow.parquet as pq
import pytest

from cpo_pipeline.concepts.graph import ConceptGraphFiles, read_graph
from cpo_pipeline.concepts.queries import choose_counterfactual_targets, perturbation_plan
from cpo_pipeline.radiology.chexpert import DISEASES
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.testing.openai_server import DEFAULT_MODEL, OpenAICompatibleServer
from cpo_pipeline_tests.pipeline import materialize


@pytest.fixture(scope="module")
def materialized(demo_run):
    return demo_run.result, demo_run.data_root


def test_the_graph_materializes_on_the_demo_data_with_its_files(materialized):
    result, data_root = materialized
    files = ConceptGraphFiles.under(data_root)

    assert result.success
    assert files.graph.is_file() and files.picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nodes = pq.read_table(files.nodes).to_pandas()
    edges = pq.read_table(files.edges).to_pandas()
    assert set(DISEASES) <= set(nodes.loc[nodes["kind"] == "disease", "name"])
    assert {"seed", "statistics"} <= set(edges["provenance"])
    assert {"association", "exclusion", "irrelevance"} <= set(edges["relation"])


def test_every_check_passes_on_the_demo_graph(materialized):
    result, _ = materialized
    evaluations = result.get_asset_check_evaluations()

    assert {e.check_name: e.passed for e in evaluations
            if e.asset_key == dg.AssetKey("concept_graph")} == {
        "every_disease_has_an_association": True,
        "no_pair_associated_and_excluded": True,
        "every_edge_has_provenance": True,
        "graph_loads_back_identically": True,
    }


def test_the_picture_and_the_strongest_associations_show_in_the_metadata(materialized):
    result, _ = materialized
    [materialization] = result.asset_materializations_for_node("concept_graph")
    metadata = materialization.metadata

    assert metadata["picture"].value.startswith("![concept graph](data:image/png;base64,")
    assert re.search(r"\| Pneumothorax +\| visceral pleural line \(1\.00, seed\) +\|",
                     metadata["strongest_associations"].value)
    assert metadata["llm"].value == "off (no CPO_LLM_BASE_URL)"


def test_a_cardiomegaly_study_gets_edema_and_effusion_targets_from_the_demo_graph(materialized):
    _, data_root = materialized
    graph = read_graph(ConceptGraphFiles.under(data_root).graph)
    labels = {"Cardiomegaly": 1.0, "Pneumothorax": 0.0}

    targets = choose_counterfactual_targets(graph, labels, ["enlarged cardiac silhouette"])
    plan = perturbation_plan(graph, "Cardiomegaly", "Edema", ["enlarged cardiac silhouette"])

    assert [t.disease for t in targets] == ["Edema", "Pleural Effusion"]
    assert [step.concept for step in plan.add] == ["pulmonary vascular congestion",
                                                   "Kerley B lines"]


def _edema_everywhere(messages: list[dict[str, str]]) -> str:
    reports = int(messages[-1]["content"].split(" reports follow")[0])
    return json.dumps({"reports": [{"diseases": ["Edema"], "features": ["Kerley lines"]}] * reports,
                       "disease_feature_map": {"Edema": ["Kerley B lines"]}})


def test_with_an_endpoint_the_llm_s_edges_join_and_a_non_json_batch_is_skipped(
        materialized, tmp_path):
    _, demo_root = materialized
    shutil.copytree(demo_root / "tables", tmp_path / "tables")
    replies = iter(["Sorry, I cannot read these reports."])

    def responder(messages: list[dict[str, str]]) -> str:
        return next(replies, None) or _edema_everywhere(messages)

    with OpenAICompatibleServer(responder=responder) as server:
        result = materialize(
            tmp_path, ["concept_graph"],
            llm=LLMEndpointResource(base_url=server.base_url, model=DEFAULT_MODEL),
            run_config={"ops": {"concept_graph": {"config": {
                "llm_reports": 6, "llm_batch_size": 2, "llm_min_reports": 1}}}},
        )

    [materialization] = result.asset_materializations_for_node("concept_graph")
    graph = read_graph(ConceptGraphFiles.under(tmp_path).graph)
    assert len(server.chat_requests) == 3
    assert (materialization.metadata["llm_batches"].value,
            materialization.metadata["llm_batches_skipped"].value) == (3, 1)
    assert graph.graph["llm_skipped_batches"][0]["reason"].startswith("not valid JSON")
    llm_edge = graph["Edema"]["Kerley B lines"]["association/llm"]
    assert (llm_edge["model"], llm_edge["support"], llm_edge["weight"]) == (DEFAULT_MODEL, 4, 1.0)
