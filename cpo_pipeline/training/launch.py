"""How a training run is identified and launched, without importing the training stack.

The run key is the content hash of what decides the trained weights: the resolved recipe, the
training data (by file content), the starting model (by identity) and the code version. Same
key, same run directory: a finished run is reused, a killed one resumes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

from cpo_pipeline.storage import content_hash
from cpo_pipeline.training.config import TINY_MODEL, TrainingConfig, recipe_parameters
from cpo_pipeline.training.run_dirs import directory_fingerprint
from cpo_pipeline.training.tiny_model import TinyModelSpec

ENTRY_POINT = "cpo_pipeline.training.train"


def model_identity(name_or_path: str) -> str:
    """What names a starting model's content cheaply: the tiny model's spec; a local
    directory's config.json and the names and sizes of its weight files (hashing gigabytes
    of weights at every materialization would cost more than it saves); a hub id as given."""
    if name_or_path == TINY_MODEL:
        return content_hash({"tiny": asdict(TinyModelSpec())})
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
