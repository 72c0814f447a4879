import dagster as dg

from cpo_pipeline.definitions import defs
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings

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
    "sft_dataset": ["counterfactual_trajectories", "cxr_images", "cxr_studies"],
    "preference_pairs": ["counterfactual_trajectories", "cxr_images", "cxr_studies"],
    "random_negative_pairs": ["cxr_studies", "preference_pairs", "sft_dataset"],
    "diagnosis_only_pairs": ["cxr_studies", "preference_pairs"],
    "sft_model": ["sft_dataset"],
    "cpo_model": ["preference_pairs", "sft_model"],
    "dpo_random_model": ["random_negative_pairs", "sft_model"],
    "cpo_no_cot_model": ["diagnosis_only_pairs", "sft_model"],
    "sft_continued_model": ["cpo_model", "sft_dataset", "sft_model"],
    "model_evaluation": ["cpo_model", "cpo_no_cot_model", "cxr_studies", "dpo_random_model",
                         "preference_pairs", "sft_continued_model", "sft_dataset",
                         "sft_model"],
    "staged_training_sets": ["cxr_studies", "diagnosis_only_pairs", "preference_pairs",
                             "random_negative_pairs", "sft_dataset"],
    "staged_models": ["staged_training_sets"],
    "staged_evaluation": ["cxr_studies", "preference_pairs", "sft_dataset", "staged_models"],
}
TRAINING_ASSETS = {"sft_model", "cpo_model", "dpo_random_model", "cpo_no_cot_model",
                   "sft_continued_model",
                   "model_evaluation", "staged_training_sets", "staged_models",
                   "staged_evaluation"}

# Every gate sits on the table the next stage reads, so selecting that table runs its gates.
EXPECTED_CHECKS = {
    "cxr_studies": ["every_study_has_image_and_findings", "label_values_in_domain",
                    "no_patient_in_two_splits", "rejects_below_bound"],
    "concept_graph": ["every_disease_has_an_association", "every_edge_has_provenance",
                      "graph_loads_back_identically", "no_pair_associated_and_excluded"],
    "counterfactual_trajectories": ["counterfactuals_are_hard_negatives",
                                    "dead_letters_below_bound"],
    "sft_dataset": ["images_exist_and_match_sha256", "no_patient_in_two_splits",
                    "no_test_study_in_training_set"],
    "preference_pairs": ["chosen_differs_from_rejected", "images_exist_and_match_sha256",
                         "no_patient_in_two_splits", "no_test_study_in_training_set",
                         "pairs_are_hard_negatives"],
    "random_negative_pairs": ["chosen_differs_from_rejected", "images_exist_and_match_sha256",
                              "no_patient_in_two_splits", "no_test_study_in_training_set"],
    "diagnosis_only_pairs": ["chosen_differs_from_rejected", "images_exist_and_match_sha256",
                             "no_patient_in_two_splits", "no_test_study_in_training_set"],
    "model_evaluation": ["evaluation_sees_no_training_data"],
    "staged_evaluation": ["staged_evaluation_sees_no_training_data"],
}
# Every gate blocks: what fails it never reaches the next stage.
WARNING_CHECKS: set[str] = set()


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


def test_asset_check_snapshot_every_gate_blocking_but_the_reported_ones():
    graph = defs.get_repository_def().asset_graph
    checks: dict[str, list[str]] = {}
    for key in sorted(graph.asset_check_keys):
        checks.setdefault(key.asset_key.to_user_string(), []).append(key.name)
        assert graph.get_check_spec(key).blocking == (key.name not in WARNING_CHECKS), key

    assert {asset: sorted(names) for asset, names in checks.items()} == EXPECTED_CHECKS


def test_every_run_config_field_is_described_for_the_launchpad():
    undescribed = [
        f"{node.name}.{name}"
        for node in defs.resolve_implicit_global_asset_job_def().nodes
        if node.definition.config_schema is not None
        and hasattr(node.definition.config_schema.config_type, "fields")
        for name, field in node.definition.config_schema.config_type.fields.items()
        if not field.description
    ]
    resources = {"settings": PipelineSettings, "io_manager": ParquetIOManager,
                 "llm": LLMEndpointResource}
    undescribed += [
        f"{key}.{name}" for key, resource in resources.items()
        for name, field in resource.model_fields.items()
        if not field.description and name != "settings"  # the IO manager's, a resource itself
    ]

    assert undescribed == []


def test_every_materializable_asset_declares_a_code_version():
    graph = defs.get_repository_def().asset_graph
    missing = [
        key.to_user_string()
        for key in graph.materializable_asset_keys
        if graph.get(key).code_version is None
    ]
    assert missing == []


def test_the_scheduled_refresh_observes_the_source_and_rebuilds_every_asset(
    demo_run, tmp_path, clean_env
):
    # A copy of the demo root: its tree and decoded images are reused, the rest is rebuilt.
    clean_env.setenv("CPO_DATA_ROOT", str(demo_run.copy_to(tmp_path / "data")))
    schedule = defs.resolve_schedule_def("refresh_dataset_schedule")
    [request] = list(schedule.evaluate_tick(dg.build_schedule_context()).run_requests)

    result = defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=request.tags)

    assert result.success
    observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert [e.asset_key.to_user_string() for e in observed] == ["mimic_cxr_source"]
    rebuilt = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    # Training starts on purpose (the train_and_evaluate job), not on the dataset cron.
    assert rebuilt == set(EXPECTED_GRAPH) - {"mimic_cxr_source"} - TRAINING_ASSETS
