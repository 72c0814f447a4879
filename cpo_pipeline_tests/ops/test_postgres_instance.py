"""deploy/dagster.yaml against a real PostgreSQL: the instance loads from it, runs write their
history there, and a second process-like instance reads it back."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from cpo_pipeline.definitions import GPU_RUN_TAGS, TRAINING_MAX_RUNTIME_S, defs
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.ingestion.source import MimicSource, manifest_hash, source_manifest

DEPLOY_INSTANCE = Path(__file__).parents[2] / "deploy" / "dagster.yaml"
SOURCE, STUDIES = dg.AssetKey("mimic_cxr_source"), dg.AssetKey("cxr_studies")


@pytest.fixture
def deploy_home(tmp_path, clean_env, postgres_server) -> Path:
    """DAGSTER_HOME holding deploy/dagster.yaml, its variables pointing at the test server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    clean_env.setenv("DAGSTER_HOME", str(home))
    for name, value in postgres_server.environment().items():
        clean_env.setenv(name, value)
    return home


def test_the_deploy_instance_file_names_no_credentials():
    text = DEPLOY_INSTANCE.read_text()
    database = yaml.safe_load(text)["storage"]["postgres"]["postgres_db"]

    credentials = {name: value for name, value in database.items() if name != "scheme"}

    assert database["scheme"] == "postgresql+psycopg2"
    assert all(set(value) == {"env"} for value in credentials.values()), credentials
    assert {value["env"] for value in credentials.values()} == {
        "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB"}


def test_the_deploy_instance_queues_runs_with_one_gpu_run_and_monitors_them(deploy_home):
    with dg.DagsterInstance.get() as instance:
        coordinator = instance.run_coordinator
        queue = instance.get_concurrency_config().run_queue_config

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert queue.max_concurrent_runs == 4
        assert queue.tag_concurrency_limits == [{"key": "cpo/gpu", "limit": 1}]
        assert instance.global_op_concurrency_default_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 300
        assert instance.run_monitoring_max_resume_run_attempts == 0


def test_training_runs_carry_the_gpu_tag_and_a_max_runtime(deploy_home):
    with dg.DagsterInstance.get() as instance:
        limited = {limit["key"] for limit in
                   instance.get_concurrency_config().run_queue_config.tag_concurrency_limits}

    for job in ("train_and_evaluate", "full_chain"):
        tags = defs.resolve_job_def(job).tags
        assert tags["dagster/max_runtime"] == str(TRAINING_MAX_RUNTIME_S) == "86400"
        assert set(GPU_RUN_TAGS) - {"dagster/max_runtime"} == limited
        assert tags.items() >= GPU_RUN_TAGS.items()
    assert "cpo/gpu" not in defs.resolve_job_def("refresh_dataset").tags


def test_runs_write_their_history_to_postgres_and_another_instance_reads_it(
        deploy_home, tmp_path, clean_env, postgres_server):
    tree = tmp_path / "mimic-cxr"
    write_demo_tree(tree, DemoConfig(patients=4, seed=3))
    clean_env.setenv("MIMIC_CXR_ROOT", str(tree))
    clean_env.setenv("CPO_DATA_ROOT", str(tmp_path / "data"))
    expected_version = manifest_hash(source_manifest(MimicSource(tree, None, is_demo=False)))

    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("refresh_dataset").execute_in_process(
            instance=instance, asset_selection=[SOURCE, STUDIES])
        assert result.success
        written = instance.get_latest_materialization_event(STUDIES).asset_materialization

    with dg.DagsterInstance.from_config(str(deploy_home)) as reader:
        run = reader.get_run_by_id(result.run_id)
        studies = reader.get_latest_materialization_event(STUDIES)
        observed = reader.get_latest_data_version_record(SOURCE, is_source=True)
        checks = reader.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(STUDIES, "rejects_below_bound")])

    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert studies.run_id == result.run_id
    assert studies.asset_materialization.metadata == written.metadata
    assert studies.asset_materialization.tags["dagster/data_version"] == written.tags[
        "dagster/data_version"]
    assert observed.asset_observation.data_version == expected_version
    [execution] = checks.values()
    assert execution.run_id == result.run_id and execution.evaluation.passed
    with postgres_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s "
                       "AND asset_key IS NOT NULL GROUP BY dagster_event_type", (result.run_id,))
        rows = dict(cursor.fetchall())
    connection.close()
    assert rows["ASSET_MATERIALIZATION"] == 1 and rows["ASSET_OBSERVATION"] == 1
