"""MLflow tracking for a training run: which store, and the one run a killed attempt resumes.

The trainer's `report_to=["mlflow"]` logs parameters and metrics into the run that is active
when training starts; this module starts (or resumes) that run and adds the checkpoint path and
the final figures once the model is saved. Main process only.

The default store is SQLite (`sqlite:///<data_root>/mlflow/mlflow.db`, the asset's choice):
MLflow 3 refuses its plain file store unless `MLFLOW_ALLOW_FILE_STORE=true`, and SQLite needs
nothing beyond what the pipeline already installs (SQLAlchemy comes with Dagster).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cpo_pipeline.training.config import TrainingConfig

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
RUN_ID_FILE = "mlflow_run_id"
_SQLITE = "sqlite:///"


@dataclass(frozen=True)
class TrackedRun:
    tracking_uri: str
    experiment_id: str
    run_id: str


def sqlite_store(directory: Path) -> str:
    return f"{_SQLITE}{directory / 'mlflow.db'}"


def tracking_uri(config: TrainingConfig, run: Path) -> str:
    return (config.mlflow_tracking_uri or os.environ.get(TRACKING_URI_ENV)
            or sqlite_store(run))


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store, not in ./mlruns of whatever directory ran."""
    if uri.startswith(_SQLITE):
        return (Path(uri.removeprefix(_SQLITE)).parent / "artifacts").as_uri()
    return None


# The trainer logs asynchronously; batch those writes (one store transaction per few seconds,
# not per step) from one thread, so tracking costs the training loop next to nothing even when
# steps take milliseconds. A kill loses at most the last few seconds of curves (the resumed run
# logs them again from its checkpoint).
_ASYNC_LOGGING = {"MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "5",
                  "MLFLOW_ASYNC_LOGGING_THREADPOOL_SIZE": "1"}


def start_run(config: TrainingConfig, run: Path) -> TrackedRun:
    """Start the run's MLflow run, or resume the one an earlier attempt of it started."""
    for name, value in _ASYNC_LOGGING.items():
        os.environ.setdefault(name, value)
    import mlflow

    uri = tracking_uri(config, run)
    if uri.startswith(_SQLITE):
        Path(uri.removeprefix(_SQLITE)).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(config.mlflow_experiment)
    experiment_id = (experiment.experiment_id if experiment else mlflow.create_experiment(
        config.mlflow_experiment, artifact_location=_artifact_location(uri)))
    id_file = run / RUN_ID_FILE
    if id_file.is_file():
        active = mlflow.start_run(run_id=id_file.read_text().strip())
    else:
        active = mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name)
        id_file.write_text(active.info.run_id)
    return TrackedRun(uri, experiment_id, active.info.run_id)


def finish_run(tags: Mapping[str, str], metrics: Mapping[str, float]) -> None:
    """Tag the active run (checkpoint path, data version), log the final figures, end it."""
    import mlflow

    mlflow.set_tags(dict(tags))
    mlflow.log_metrics({key.replace("/", "_"): value for key, value in metrics.items()})
    mlflow.end_run()


def run_link(run: TrackedRun) -> str | None:
    """A browser link for a tracking server; None for a local store (open it with `mlflow ui`)."""
    if run.tracking_uri.startswith(("http://", "https://")):
        base = run.tracking_uri.rstrip("/")
        return f"{base}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    return None
