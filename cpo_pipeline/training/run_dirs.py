"""Where a training run lives under the data root, and the content hashes that key and version it.

```
<data_root>/models/<asset>/current.json      the run the asset last materialized (relative path)
<data_root>/models/<asset>/<run key>/
    run_config.json                           the TrainingConfig the entry point ran
    trainer/checkpoint-<step>/                resumable checkpoints (removed once model/ exists)
    model/                                    the finished model, renamed in only when complete:
        *.safetensors, config.json, processor files, README.md (model card),
        training_summary.json, log_history.jsonl, adapter/ (the LoRA adapter alone)
    failure.json                              why the last attempt stopped, if it failed
```

Plain Python: the assets and the entry point share it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from cpo_pipeline import data_layout
from cpo_pipeline.storage import atomic_target, content_hash, sha256_file

RUN_CONFIG = "run_config.json"
TRAINER_DIRNAME = "trainer"
MODEL_DIRNAME = "model"
SUMMARY = "training_summary.json"
LOG_HISTORY = "log_history.jsonl"
CARD = "README.md"
ADAPTER_DIRNAME = "adapter"
FAILURE = "failure.json"
CURRENT = "current.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_PREFIX = "checkpoint-"
# What the trainer writes about a model but is not the model: left out of its data version.
# The adapter is a copy of what the merged weights already hold, and its config records the
# absolute path it was trained from (and its target modules in set order).
_NOT_WEIGHTS = frozenset({CARD, SUMMARY, LOG_HISTORY, ADAPTER_DIRNAME})
RUN_KEY_LENGTH = 16


def run_dir(data_root: Path, asset: str, run_key: str) -> Path:
    return data_layout.models(data_root, asset) / run_key[:RUN_KEY_LENGTH]


def model_dir(run: Path) -> Path:
    return run / MODEL_DIRNAME


def trainer_dir(run: Path) -> Path:
    return run / TRAINER_DIRNAME


def directory_fingerprint(directory: Path, skip: Iterable[str] = ()) -> str:
    """`content_hash` of every file under `directory` (relative path and bytes), files and
    folders named in `skip` left out; the same files give the same hash wherever the
    directory is."""
    skipped = frozenset(skip)
    entries = [
        (path.relative_to(directory).as_posix(), sha256_file(path))
        for path in sorted(directory.rglob("*"))
        if path.is_file() and skipped.isdisjoint(path.relative_to(directory).parts)
    ]
    if not entries:
        raise FileNotFoundError(f"{directory} holds no files")
    return content_hash(entries)


def model_version(directory: Path) -> str:
    """The data version of a saved model: its weights, configs and processor files."""
    return directory_fingerprint(directory, skip=_NOT_WEIGHTS)


def complete_checkpoints(trainer: Path) -> list[Path]:
    """The trainer's checkpoints whose state file was written (it is written last), by step."""
    if not trainer.is_dir():
        return []
    found = []
    for path in trainer.glob(f"{_CHECKPOINT_PREFIX}*"):
        step = path.name.removeprefix(_CHECKPOINT_PREFIX)
        state = path / TRAINER_STATE
        if not step.isdigit() or not state.is_file():
            continue
        try:
            json.loads(state.read_text())
        except ValueError:
            continue
        found.append((int(step), path))
    return [path for _, path in sorted(found)]


def install_directory(staging: Path, target: Path) -> None:
    """Rename the finished `staging` directory to `target`, replacing an older one: a reader
    sees the old directory or the new one, never half of either."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def write_current(data_root: Path, asset: str, run: Path, data_version: str) -> None:
    """Record `run` as the one asset `asset` materialized (path relative to the data root, so a
    copied data root points into itself)."""
    pointer = {"run_dir": run.relative_to(data_root).as_posix(), "data_version": data_version}
    with atomic_target(data_layout.models(data_root, asset) / CURRENT) as tmp:
        tmp.write_text(json.dumps(pointer, indent=2))


def read_current(data_root: Path, asset: str) -> tuple[Path, str] | None:
    """The run directory and data version asset `asset` last materialized, or None."""
    path = data_layout.models(data_root, asset) / CURRENT
    if not path.is_file():
        return None
    pointer = json.loads(path.read_text())
    return data_root / pointer["run_dir"], pointer["data_version"]


def read_summary(run: Path) -> dict | None:
    """The finished run's summary, or None when `run` has no complete model."""
    return read_summary_of_model(model_dir(run))


def read_summary_of_model(directory: Path | str) -> dict | None:
    """The training summary a finished model directory carries; None for a model this
    pipeline did not train (a base model's directory, a hub id)."""
    path = Path(directory) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def read_log_history(directory: Path) -> list[dict]:
    path = directory / LOG_HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
