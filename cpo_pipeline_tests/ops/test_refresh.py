"""The refresh a user leaves running: the sensor notices new studies in the raw tree, and the
`refresh_dataset` run it requests does only the new studies' work.

One scenario, run once for the module: a 10-patient tree refreshed through the local
OpenAI-protocol server, 4 patients added as a new release adds them, the sensor ticked, the
requested run executed.
"""

import gzip
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import networkx as nx
import pandas as pd
import pytest

from cpo_pipeline import data_layout
from cpo_pipeline.assets.concepts import ConceptGraphConfig
from cpo_pipeline.concepts.graph import ConceptGraphFiles, read_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.counterfactuals.generation import (
    COUNTERFACTUAL,
    graph_context,
    labelled,
    plan_studies,
    study_inputs,
)
from cpo_pipeline.definitions import defs
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.ingestion.image_store import DECODE_CACHE_NAME
from cpo_pipeline.sensors import SOURCE_VERSION_TAG, mimic_cxr_source_changed
from cpo_pipeline.settings import PIPELINE_ENVIRONMENT
from cpo_pipeline.testing.openai_server import (
    DEFAULT_MODEL,
    OpenAICompatibleServer,
    ReceivedRequest,
)
from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt, prompt_findings

INGESTED = ("cxr_images", "cxr_reports", "cxr_labels", "cxr_studies")
TRAJECTORIES = "counterfactual_trajectories"


def _asks_for_a_counterfactual(prompt: str) -> bool:
    """A counterfactual prompt, not one of the concept graph's extraction prompts."""
    return "Target diagnosis:" in prompt


def _is_counterfactual_prompt(request: ReceivedRequest) -> bool:
    return _asks_for_a_counterfactual(request.prompt)


def _extraction_requests(requests: list[ReceivedRequest]) -> list[ReceivedRequest]:
    return [request for request in requests if not _is_counterfactual_prompt(request)]


def _quoted_reports(request: ReceivedRequest) -> list[str]:
    """The reports an extraction prompt quotes (`llm_extraction.extraction_messages`)."""
    return re.split(r"\n\nReport \d+:\n", request.prompt)[1:]


def _expert(messages: list[dict]) -> str:
    """The scripted radiologist for counterfactual prompts; for the concept graph's extraction
    prompts, a reply that reads nothing in the reports (valid JSON, no edges)."""
    if _asks_for_a_counterfactual(messages[-1]["content"]):
        return answer_counterfactual_prompt(messages)
    reports = int(messages[-1]["content"].split(" reports follow")[0])
    return json.dumps({"reports": [{"diseases": [], "features": []}] * reports,
                       "disease_feature_map": {}})


def _gzip_lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines(keepends=True)


def add_patients(tree: Path, staging: Path, config: DemoConfig) -> set[int]:
    """New patients' studies added to `tree` as a new release adds them: their files copied in,
    their rows appended to every index table, the earlier rows' bytes untouched. Returns the
    new study ids.

    A second demo tree with another seed, not the same seed with more patients: the generator
    draws every id from one random stream, so a larger tree of the same seed is a different
    tree, not a superset.
    """
    write_demo_tree(staging, config)
    shutil.copytree(staging / "files", tree / "files", dirs_exist_ok=True)
    for table in sorted(staging.glob("*.csv.gz")):
        old_ids = set(pd.read_csv(tree / table.name)["study_id"])
        assert not old_ids & set(pd.read_csv(table)["study_id"]), f"{table.name}: ids collide"
        _, *added = _gzip_lines(table)
        (tree / table.name).write_bytes(
            gzip.compress(b"".join(_gzip_lines(tree / table.name) + added), mtime=0))
    return set(pd.read_csv(staging / "cxr-study-list.csv.gz")["study_id"])


def _table(data_root: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(data_root / "tables" / f"{name}.parquet")


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    return mimic_cxr_source_changed(dg.build_sensor_context(instance=instance, cursor=cursor))


def _refresh(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("refresh_dataset").execute_in_process(
        instance=instance, tags=tags)


def _materialization(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetMaterialization:
    return next(event.materialization for event in result.get_asset_materialization_events()
                if event.asset_key.to_user_string() == asset)


@dataclass(frozen=True)
class Refresh:
    data_root: Path
    new_studies: set[int]
    before: dict[str, pd.DataFrame]  # the tables after the first run
    decode_record_before: pd.DataFrame
    unchanged_tick: dg.SensorResult  # the tree as the first run saw it, no cursor yet
    changed_tick: dg.SensorResult  # after the studies were added
    repeated_tick: dg.SensorResult  # the next tick, nothing changed since
    first: dg.ExecuteInProcessResult
    refresh: dg.ExecuteInProcessResult
    first_requests: list[ReceivedRequest]  # what reached the server during the first run
    refresh_requests: list[ReceivedRequest]  # what reached the server during the refresh
    graph_before: nx.MultiDiGraph  # the concept graph the first run built


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory) -> Refresh:
    tmp = tmp_path_factory.mktemp("refresh")
    tree, data_root = tmp / "mimic-cxr", tmp / "data"
    write_demo_tree(tree, DemoConfig(patients=10, seed=0))
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as env, OpenAICompatibleServer(responder=_expert) as server:
        for name in PIPELINE_ENVIRONMENT:
            env.delenv(name, raising=False)
        env.setenv("MIMIC_CXR_ROOT", str(tree))
        env.setenv("CPO_DATA_ROOT", str(data_root))
        env.setenv("CPO_LLM_BASE_URL", server.base_url)
        env.setenv("CPO_LLM_MODEL", DEFAULT_MODEL)
        first = _refresh(instance, {})
        sent_first = len(server.chat_requests)
        before = {name: _table(data_root, name) for name in (*INGESTED, TRAJECTORIES)}
        graph_before = read_graph(ConceptGraphFiles.under(data_root).graph)
        decode_record_before = pd.read_parquet(data_layout.images(data_root) / DECODE_CACHE_NAME)
        unchanged_tick = _tick(instance, None)

        new_studies = add_patients(tree, tmp / "added", DemoConfig(patients=4, seed=1))
        changed_tick = _tick(instance, unchanged_tick.cursor)
        repeated_tick = _tick(instance, changed_tick.cursor)
        [request] = changed_tick.run_requests
        refresh = _refresh(instance, request.tags)
        return Refresh(data_root, new_studies, before, decode_record_before, unchanged_tick,
                       changed_tick, repeated_tick, first, refresh,
                       server.chat_requests[:sent_first], server.chat_requests[sent_first:],
                       graph_before)


def test_the_sensor_requests_one_refresh_per_change_of_the_tree(refreshed):
    [observed] = refreshed.first.get_asset_observation_events()
    version = observed.asset_observation_data.asset_observation.data_version

    # No cursor yet: the instance's last observation says the tree was already refreshed.
    assert refreshed.unchanged_tick.run_requests == []
    assert refreshed.unchanged_tick.cursor == version
    [request] = refreshed.changed_tick.run_requests
    assert refreshed.changed_tick.cursor != version
    assert request.tags[SOURCE_VERSION_TAG] == refreshed.changed_tick.cursor
    assert refreshed.repeated_tick.run_requests == []
    assert refreshed.repeated_tick.cursor == refreshed.changed_tick.cursor
    assert refreshed.refresh.success
    assert refreshed.refresh.dagster_run.tags[SOURCE_VERSION_TAG] == refreshed.changed_tick.cursor


def test_the_refresh_decodes_only_the_new_studies_images(refreshed):
    images = _table(refreshed.data_root, "cxr_images")
    new_images = images[images["study_id"].isin(refreshed.new_studies)]
    record = pd.read_parquet(data_layout.images(refreshed.data_root) / DECODE_CACHE_NAME)
    old_record = record[~record["study_id"].isin(refreshed.new_studies)]

    assert len(new_images) > 0
    assert _materialization(refreshed.refresh, "cxr_images").metadata[
        "decoded_this_run"].value == len(new_images)
    assert _materialization(refreshed.first, "cxr_images").metadata[
        "decoded_this_run"].value == len(refreshed.before["cxr_images"])
    # The store's record of the old images is unchanged: same source and PNG hashes and paths.
    pd.testing.assert_frame_equal(
        old_record.sort_values("dicom_id", ignore_index=True),
        refreshed.decode_record_before.sort_values("dicom_id", ignore_index=True))


@pytest.mark.parametrize("name", INGESTED)
def test_the_refresh_keeps_earlier_ingested_rows_byte_identical_and_adds_the_new_ones(
        refreshed, name):
    before, after = refreshed.before[name], _table(refreshed.data_root, name)
    kept = after[after["study_id"].isin(set(before["study_id"]))].reset_index(drop=True)

    pd.testing.assert_frame_equal(kept, before.reset_index(drop=True), check_exact=True)
    assert set(after["study_id"]) - set(before["study_id"]) <= refreshed.new_studies
    assert len(after) > len(before)


def test_the_refresh_labels_the_new_studies(refreshed):
    labels = _table(refreshed.data_root, "cxr_labels")
    studies = _table(refreshed.data_root, "cxr_studies")
    new = studies[studies["study_id"].isin(refreshed.new_studies)]

    # The demo, like the real tables, leaves a few studies without a labeller row.
    assert set(labels["study_id"]) & refreshed.new_studies == set(
        new.loc[new["label_source"].notna(), "study_id"])
    assert new["label_source"].notna().sum() > 0


def _prompted(requests: list[ReceivedRequest], studies: pd.DataFrame) -> list[tuple[int, str]]:
    """The study and target each counterfactual prompt is about, the study found by its quoted
    findings."""
    by_findings = studies.groupby(studies["findings_text"].str.split().str.join(" "))["study_id"]
    owners = by_findings.agg(set).to_dict()
    found = [owners[prompt_findings(r.prompt)] for r in requests]
    assert all(len(ids) == 1 for ids in found), "findings shared by two studies: ambiguous"
    targets = [re.search(r"^Target diagnosis: (.+)$", r.prompt, re.MULTILINE).group(1)
               for r in requests]
    return [(next(iter(ids)), target) for ids, target in zip(found, targets, strict=True)]


def _replanned(refreshed: Refresh) -> set[int]:
    """The earlier studies whose counterfactuals the grown concept graph plans otherwise: another
    task (target, source, plan and the edges it cites) or other relations quoted in a prompt.
    The graph's disease counts move the per-study draw of a balancing target."""
    studies = refreshed.before["cxr_studies"]
    inputs = study_inputs(studies[labelled(studies)])
    extractor = ConceptExtractor(load_ontology())
    graph_after = read_graph(ConceptGraphFiles.under(refreshed.data_root).graph)

    def planned(graph: nx.MultiDiGraph) -> dict[int, list]:
        return {study: [(task, graph_context(graph, task)) for task in tasks]
                for study, tasks in plan_studies(inputs, graph, extractor, k=2).items()}

    before, after = planned(refreshed.graph_before), planned(graph_after)
    return {study for study in before if before[study] != after[study]}


def _counterfactuals(table: pd.DataFrame) -> set[tuple[int, str, str]]:
    rows = table[table["kind"] == COUNTERFACTUAL]
    return set(zip(rows["study_id"], rows["target_disease"], rows["plan"], strict=True))


def test_the_refresh_keeps_the_trajectories_of_earlier_studies_whose_plan_is_unchanged(
        refreshed):
    table = _table(refreshed.data_root, TRAJECTORIES)
    before = refreshed.before[TRAJECTORIES]
    replanned = _replanned(refreshed)
    unchanged = set(before["study_id"]) - replanned
    kept = table[table["study_id"].isin(unchanged)].reset_index(drop=True)

    # The graph grew (its hash and counts changed), yet nearly every earlier plan stands.
    assert len(replanned) <= len(set(before["study_id"])) // 10
    pd.testing.assert_frame_equal(
        kept, before[before["study_id"].isin(unchanged)].reset_index(drop=True),
        check_exact=True)


def test_an_earlier_study_the_grown_graph_plans_otherwise_is_generated_again(refreshed):
    table = _table(refreshed.data_root, TRAJECTORIES)
    before = refreshed.before[TRAJECTORIES]
    replanned = _replanned(refreshed)
    again, earlier = (frame[frame["study_id"].isin(replanned)] for frame in (table, before))

    # In this tree one earlier study's balancing target moves with the grown disease counts.
    assert replanned
    assert set(again["input_key"]).isdisjoint(earlier["input_key"])
    assert (again["created_at"] > earlier["created_at"].max()).all()
    assert _counterfactuals(again) != _counterfactuals(earlier)
    assert (again.loc[again["kind"] == COUNTERFACTUAL, "verdict"] == "accepted").all()


def test_the_refresh_sends_the_expert_only_counterfactuals_it_has_not_answered_before(
        refreshed):
    table = _table(refreshed.data_root, TRAJECTORIES)
    before = refreshed.before[TRAJECTORIES]
    sent = [r for r in refreshed.refresh_requests if _is_counterfactual_prompt(r)]
    new_counterfactuals = table[table["study_id"].isin(refreshed.new_studies)
                                & (table["kind"] == COUNTERFACTUAL)]
    unanswered = {(study, target) for study, target, _ in
                  _counterfactuals(table) - _counterfactuals(before)}

    # The scripted expert's first candidate always passes: one request per counterfactual; an
    # earlier study's unchanged task is answered by the response cache.
    assert (new_counterfactuals["verdict"] == "accepted").all()
    prompted = _prompted(sent, _table(refreshed.data_root, "cxr_studies"))
    assert sorted(prompted) == sorted(unanswered)
    assert set(new_counterfactuals["study_id"]) <= {study for study, _ in prompted}
    assert {study for study, _ in prompted} - refreshed.new_studies <= _replanned(refreshed)
    generated = table.loc[table["study_id"].isin(refreshed.new_studies), "study_id"].nunique()
    assert _materialization(refreshed.refresh, TRAJECTORIES).metadata[
        "studies_generated_this_run"].value == generated + len(_replanned(refreshed))


def test_the_refresh_asks_the_concept_graph_extraction_about_the_new_reports_only(refreshed):
    studies = _table(refreshed.data_root, "cxr_studies")
    texts = studies.set_index("study_id")["findings_text"].str.strip()
    batch_size = ConceptGraphConfig().llm_batch_size
    first = _extraction_requests(refreshed.first_requests)
    refresh = _extraction_requests(refreshed.refresh_requests)
    asked = [report for request in refresh for report in _quoted_reports(request)]

    # The earlier reports' batches are asked in the same words, so the response cache answers
    # all of them: nothing of theirs reaches the server; the new reports form new batches.
    assert len(first) == math.ceil(len(refreshed.before["cxr_studies"]) / batch_size)
    assert sorted(asked) == sorted(texts[texts.index.isin(refreshed.new_studies)])
    assert len(refresh) == math.ceil(len(asked) / batch_size)
