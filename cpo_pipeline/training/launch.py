"""How a training run is identified, configured and launched, without importing the training
stack (the Dagster side, `wiring.training_launch`, adds only the Pipes call).

The run key is the content hash of what decides the trained weights: the resolved recipe, the
training data (by file content), the starting model (by identity) and the code version. Same
key, same run directory: a finished run is reused, a killed one resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cpo_pipeline import data_layout
from cpo_pipeline.storage import content_hash
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import (
    PAPER,
    TINY,
    TINY_MODEL,
    TrainingConfig,
    recipe_parameters,
)
from cpo_pipeline.training.preflight import TrainingConfigError
from cpo_pipeline.training.run_dirs import directory_fingerprint
from cpo_pipeline.training.tiny_model import VISION_PRETRAINING_VERSION, TinyModelSpec
from cpo_pipeline.training.tracking import RUN_ID_FILE as MLFLOW_RUN_ID
from cpo_pipeline.training.tracking import TRACKING_URI_ENV, sqlite_store
from cpo_pipeline.training.vision_corpus import CORPUS_VERSION

ENTRY_POINT = "cpo_pipeline.training.train"
# The code version of every training run (the model assets' and the staged runs'): part of the
# run key, so bumping it retrains instead of reusing.
TRAINING_VERSION = "1"
# Where corpus-pretrained vision towers of the tiny model are kept, beside the models folders.
VISION_TOWERS = "vision_tower"


def model_identity(name_or_path: str) -> str:
    """What names a starting model's content cheaply: the tiny model's spec; a local
    directory's config.json and the names and sizes of its weight files (hashing gigabytes
    of weights at every materialization would cost more than it saves); a hub id as given."""
    if name_or_path == TINY_MODEL:
        return content_hash({"tiny": asdict(TinyModelSpec()),
                             "vision_pretraining": VISION_PRETRAINING_VERSION,
                             "vision_corpus": CORPUS_VERSION})
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        config = path / "config.json"
        weights = sorted((p.name, p.stat().st_size) for p in path.glob("*.safetensors"))
        return content_hash({
            "config": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
            "weights": weights,
        })
    return content_hash({"hub_id": name_or_path})


def run_key(config: TrainingConfig, starting_model: str, code_version: str,
            reference: str | None = None) -> str:
    """The run's identity (see the module docstring); `starting_model` (and `reference`, a DPO
    reference other than the starting model) is `model_identity`'s or, for a model this
    pipeline trained, its data version."""
    datasets = {"train": directory_fingerprint(Path(config.dataset_dir))}
    if config.eval_dataset_dir:
        datasets["eval"] = directory_fingerprint(Path(config.eval_dataset_dir))
    identity = {"recipe": recipe_parameters(config), "datasets": datasets,
                "starting_model": starting_model, "code_version": code_version}
    if reference is not None:
        identity["reference"] = reference
    return content_hash(identity)


def launch_command(config_path: Path, num_processes: int = 1,
                   accelerate_config: str | None = None,
                   main_process_port: int | None = None) -> list[str]:
    """The command that trains `config_path`: the entry point as a plain process, or under
    `accelerate launch` for several processes or a given accelerate config.

    Without a config file, several processes start through accelerate's multi-process
    launcher (torchrun); on a machine without CUDA the trainer then joins them over gloo
    (`accelerate launch --cpu` alone starts a single process in accelerate 1.x). Several
    launches on one machine at once need distinct `main_process_port`s.
    """
    module = ["-m", ENTRY_POINT, str(config_path)]
    if num_processes <= 1 and accelerate_config is None:
        return [sys.executable, *module]
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config is not None:
        command += ["--config_file", accelerate_config]
    else:
        command += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no"]
    if num_processes > 1:
        command += ["--num_processes", str(num_processes)]
    if main_process_port is not None:
        command += ["--main_process_port", str(main_process_port)]
    return command + module


def describe_command(command: list[str]) -> str:
    return " ".join(json.dumps(part) if " " in part else part for part in command)


@dataclass(frozen=True)
class StartingModel:
    """A model a run starts from (or refers to): its directory or id, its identity for the run
    key, and whether it is the tiny offline model."""

    path: str
    identity: str
    tiny: bool


def policy_start(policy_model: str | None) -> StartingModel:
    """The untrained policy SFT starts from: `policy_model` ($CPO_POLICY_MODEL), else the tiny
    offline model."""
    path = policy_model or TINY_MODEL
    return StartingModel(path, model_identity(path), path == TINY_MODEL)


def trained_start(run: Path, version: str) -> StartingModel:
    """A model this pipeline trained, as the start (or reference) of another run."""
    summary = run_dirs.read_summary(run)
    tiny = summary is not None and summary["base_model"] == TINY_MODEL
    return StartingModel(str(run_dirs.model_dir(run)), f"trained:{version}", tiny)


@dataclass(frozen=True)
class LaunchOptions:
    """How a run is launched, not what it trains: outside the run key."""

    force: bool = False
    num_processes: int = 1
    accelerate_config: str | None = None


def resolve_training(values: dict, *, stage: str, train_dir: Path, eval_dir: Path | None,
                     dataset_name: str, start: StartingModel,
                     reference: StartingModel | None = None) -> tuple[TrainingConfig,
                                                                      LaunchOptions]:
    """A stage's launchpad values (the tunable TrainingConfig fields plus the launch options
    and `recipe`) as the run's TrainingConfig; raises TrainingConfigError on values that
    cannot train. An unset recipe is the tiny one for the tiny model, else the paper's."""
    values = dict(values)
    options = LaunchOptions(force=values.pop("force"), num_processes=values.pop("num_processes"),
                            accelerate_config=values.pop("accelerate_config"))
    recipe = values.pop("recipe") or (TINY if start.tiny else PAPER)
    training = TrainingConfig(
        stage=stage, dataset_dir=str(train_dir),
        eval_dataset_dir=str(eval_dir) if eval_dir else None, dataset_name=dataset_name,
        model_name_or_path=start.path, recipe=recipe,
        ref_model_name_or_path=reference.path if reference else None, **values)
    errors = training.basic_errors()
    if errors:
        raise TrainingConfigError("bad training config: " + "; ".join(errors))
    return training, options


def tracking_uri(data_root: Path) -> str:
    """Where runs are tracked: $MLFLOW_TRACKING_URI (a team server), else a store under the
    data root."""
    return os.environ.get(TRACKING_URI_ENV) or sqlite_store(data_layout.mlflow(data_root))


@dataclass(frozen=True)
class PlannedRun:
    """A run's directory and config; `finished` is its summary when a run with the same key
    has completed (nothing to launch unless forced)."""

    run: Path
    config: TrainingConfig
    finished: dict | None


def plan_run(data_root: Path, asset: str, training: TrainingConfig, start: StartingModel,
             reference: StartingModel | None = None) -> PlannedRun:
    """Key the run by content and find its directory under the asset's models folder."""
    key = run_key(training, start.identity, TRAINING_VERSION,
                  reference.identity if reference else None)
    run = run_dirs.run_dir(data_root, asset, key)
    return PlannedRun(run, training, run_dirs.read_summary(run))


def prepare_launch(plan: PlannedRun, data_root: Path, asset: str, options: LaunchOptions
                   ) -> list[str]:
    """Ready the run directory (a previous failure cleared; a forced run gets a new MLflow
    run, not a continuation of the finished one), write its run config, and return the
    command that trains it."""
    run = plan.run
    run.mkdir(parents=True, exist_ok=True)
    (run / run_dirs.FAILURE).unlink(missing_ok=True)
    if options.force:
        (run / MLFLOW_RUN_ID).unlink(missing_ok=True)
    training = replace(plan.config, output_dir=str(run), run_name=f"{asset}-{run.name}",
                       mlflow_tracking_uri=tracking_uri(data_root),
                       tiny_vision_cache_dir=plan.config.tiny_vision_cache_dir
                       or str(data_layout.models(data_root, VISION_TOWERS)))
    return launch_command(training.write(run / run_dirs.RUN_CONFIG), options.num_processes,
                          options.accelerate_config)
