"""The jobs, schedule and sensor users drive the pipeline with: what each runs, and when."""

import os
import subprocess
import sys

import dagster as dg

from cpo_pipeline.definitions import defs

TRAINING_GROUPS = {"training", "evaluation"}


def _selected(job: str) -> dict[str, str]:
    """Asset name -> group of every asset `job` runs (the observed source included)."""
    graph = defs.resolve_asset_graph()
    keys = defs.resolve_job_def(job).asset_layer.selected_asset_keys
    return {key.to_user_string(): graph.get(key).group_name for key in keys}


def test_refresh_dataset_observes_the_source_and_builds_the_datasets_without_a_gpu():
    selected = _selected("refresh_dataset")

    assert set(selected.values()) == {"ingestion", "concepts", "counterfactuals", "preference"}
    assert {"mimic_cxr_source", "cxr_studies", "concept_graph", "counterfactual_trajectories",
            "preference_pairs", "sft_dataset"} <= set(selected)
    assert "cpo/gpu" not in defs.resolve_job_def("refresh_dataset").tags


def test_train_and_evaluate_runs_the_training_and_evaluation_groups_only():
    selected = _selected("train_and_evaluate")

    assert set(selected.values()) == TRAINING_GROUPS
    assert {"sft_model", "cpo_model", "model_evaluation"} <= set(selected)


def test_full_chain_runs_every_asset():
    graph = defs.resolve_asset_graph()
    every = {key.to_user_string() for key in graph.get_all_asset_keys()}

    assert set(_selected("full_chain")) == every


def test_automation_is_off_until_turned_on_and_targets_the_refresh():
    schedule = defs.resolve_schedule_def("refresh_dataset_schedule")
    sensor = defs.resolve_sensor_def("mimic_cxr_source_changed")

    assert schedule.job_name == sensor.job_name == "refresh_dataset"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert schedule.cron_schedule == "0 3 * * 1"
    # Nothing starts training on its own.
    assert {s.job_name for s in defs.schedules} | {s.job_name for s in defs.sensors} == {
        "refresh_dataset"}


def _load_cron(cron: str) -> subprocess.CompletedProcess:
    program = ("from cpo_pipeline.definitions import defs; "
               "print(defs.resolve_schedule_def('refresh_dataset_schedule').cron_schedule)")
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=False, env={**os.environ, "CPO_REFRESH_CRON": cron})


def test_the_refresh_cron_comes_from_cpo_refresh_cron():
    loaded = _load_cron("30 1 * * *")

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "30 1 * * *"


def test_an_invalid_refresh_cron_fails_loading_and_names_the_variable():
    loaded = _load_cron("every monday")

    assert loaded.returncode != 0
    assert "CPO_REFRESH_CRON='every monday' is not a 5-field cron expression" in loaded.stderr
