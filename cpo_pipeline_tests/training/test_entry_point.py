"""The entry point as its own process: a run killed mid-training resumes from its last complete
checkpoint and never leaves a model behind half-written, and the same code trains as two
data-parallel processes under `accelerate launch` (DDP over gloo)."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from transformers import AutoModelForImageTextToText, AutoProcessor

from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import SFT, TINY, TrainingConfig
from cpo_pipeline.training.launch import launch_command
from cpo_pipeline_tests.training.sets import save_sft_set

_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _config(tmp_path: Path, **fields) -> Path:
    dataset = save_sft_set(tmp_path / "train", rows=8)
    values = {"stage": SFT, "dataset_dir": str(dataset), "output_dir": str(tmp_path / "run"),
              "recipe": TINY, "per_device_train_batch_size": 2, "eval_samples": 0,
              "sample_max_new_tokens": 0, **fields}
    return TrainingConfig(**values).write(tmp_path / "run_config.json")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_checkpoint(process: subprocess.Popen, trainer: Path, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        complete = run_dirs.complete_checkpoints(trainer)
        if complete:
            return complete[-1]
        assert process.poll() is None, "the run ended before writing a checkpoint"
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint under {trainer} within {timeout} s")


def test_a_killed_run_resumes_from_its_last_checkpoint_and_finishes(tmp_path):
    config = _config(tmp_path, max_steps=60, save_steps=2, logging_steps=1, report_to="none")
    run = tmp_path / "run"
    process = subprocess.Popen(launch_command(config), env=_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(process, run_dirs.trainer_dir(run), timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert not run_dirs.model_dir(run).exists()  # nothing half-written stands as the model
    survived = run_dirs.complete_checkpoints(run_dirs.trainer_dir(run))
    assert survived
    resumed = subprocess.run(launch_command(config), env=_ENV, capture_output=True, text=True,
                             check=False)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = run_dirs.read_summary(run)
    assert 2 <= summary["resumed_from_step"] < 60
    assert summary["resumed_from_step"] >= int(survived[-1].name.split("-")[1])
    assert summary["global_step"] == 60
    # The history restored from the checkpoint plus the steps after it: every step logged once.
    steps = [row["step"] for row in run_dirs.read_log_history(run_dirs.model_dir(run))
             if "loss" in row]
    assert steps == list(range(1, 61))
    assert not run_dirs.trainer_dir(run).exists()


def test_two_processes_train_one_model_over_gloo(tmp_path):
    config = _config(tmp_path, max_steps=3, logging_steps=1)
    command = launch_command(config, num_processes=2, main_process_port=_free_port())

    finished = subprocess.run(command, env=_ENV, capture_output=True, text=True, timeout=300,
                              check=False)

    assert finished.returncode == 0, finished.stderr[-3000:]
    run = tmp_path / "run"
    summary = run_dirs.read_summary(run)
    assert summary["world_size"] == 2
    assert summary["global_step"] == 3
    # Each step took a batch of 2 on each of the 2 processes: 12 samples in 3 steps.
    samples = summary["train_samples_per_second"] * summary["train_runtime_s"]
    assert abs(samples - 12) < 0.5
    history = run_dirs.read_log_history(run_dirs.model_dir(run))
    assert [row["step"] for row in history if "loss" in row] == [1, 2, 3]
    assert summary["mlflow"]["run_id"] and summary["data_version"] == run_dirs.model_version(
        run_dirs.model_dir(run))
    # One model, written once by the main process, that loads like any checkpoint.
    assert [p.name for p in run.iterdir() if p.name.startswith(".model")] == []
    model = AutoModelForImageTextToText.from_pretrained(run_dirs.model_dir(run))
    processor = AutoProcessor.from_pretrained(run_dirs.model_dir(run))
    assert model.config.model_type == "llava" and processor.tokenizer.pad_token == "<pad>"
    assert json.loads((run_dirs.model_dir(run) / run_dirs.SUMMARY).read_text()) == summary
