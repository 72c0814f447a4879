import dagster as dg

from cpo_pipeline.definitions import defs

# The asset graph is part of the interface: a rename or a lost dependency must fail loudly here.
EXPECTED_GRAPH = {
    "mimic_cxr_source": [],
    "cxr_images": ["mimic_cxr_source"],
    "cxr_reports": ["mimic_cxr_source"],
    "cxr_labels": ["mimic_cxr_source"],
    "cxr_studies": ["mimic_cxr_source"],
    "ingest_rejects": ["mimic_cxr_source"],
    "concept_graph": ["cxr_studies"],
    "counterfactual_trajectories": ["concept_graph", "cxr_studies"],
}


def _graph(definitions: dg.Definitions) -> dict[str, list[str]]:
    repository = definitions.get_repository_def()
    graph = repository.asset_graph
    return {
        key.to_user_string(): sorted(parent.to_user_string() for parent in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot():
    assert _graph(defs) == EXPECTED_GRAPH


def test_every_materializable_asset_declares_a_code_version():
    graph = defs.get_repository_def().asset_graph
    missing = [
        key.to_user_string()
        for key in graph.materializable_asset_keys
        if graph.get(key).code_version is None
    ]
    assert missing == []


def test_the_scheduled_refresh_observes_the_source_and_rebuilds_every_asset(tmp_path, monkeypatch):
    for name in ("MIMIC_CXR_ROOT", "MIMIC_CXR_JPG_ROOT", "CPO_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CPO_DATA_ROOT", str(tmp_path))
    schedule = defs.get_schedule_def("dataset_refresh_schedule")
    [request] = list(schedule.evaluate_tick(dg.build_schedule_context()).run_requests)

    result = defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=request.tags)

    assert result.success
    observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert [e.asset_key.to_user_string() for e in observed] == ["mimic_cxr_source"]
    assert (tmp_path / "tables" / "counterfactual_trajectories.parquet").is_file()
