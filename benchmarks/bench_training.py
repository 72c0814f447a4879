"""Training throughput: the pipeline's entry point against a bare TRL script, same model and data.

Materializes the demo chain's training sets once (a temporary data root), trains the tiny
offline model's SFT stage once with the pipeline (the starting point of both DPO figures), then
runs, each in a fresh process and interleaved `--repeats` times, on the same steps:

| figure | what runs |
| --- | --- |
| bare TRL, SFT | `SFTTrainer` with the same LoRA adapter, hyper-parameters, batch, logging interval and thread count; no tracking, no checkpoints, no checks |
| pipeline, SFT | `python -m cpo_pipeline.training.train` (stage sft): preflight, MLflow through `report_to`, resumable checkpoints, the final evaluation and the model card |
| bare TRL, DPO | `DPOTrainer` on preference_pairs from the SFT model, LoRA as above |
| pipeline, DPO | the entry point, stage dpo |

The figure is the trainer's own `train_samples_per_second` (the training loop, not process start
or model saving), median over the repeats; the process wall time is printed beside it. Target:
the pipeline ≥ 0.95× the bare script per stage. Exits non-zero when a stage misses it. The
tiny model trains with one intra-op thread in both (the pipeline's default for it).

    .venv/bin/python benchmarks/bench_training.py [--repeats 3] [--sft-steps 60] [--dpo-steps 36]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_support import clean_environment

TARGET_RATIO = 0.95


def _training_sets(data_root: Path) -> None:
    import dagster as dg

    from cpo_pipeline.definitions import defs
    from cpo_pipeline.resources.rooted import rooted_resources

    names = ("cxr_studies", "concept_graph", "counterfactual_trajectories", "sft_dataset",
             "preference_pairs")
    dg.materialize([defs.get_assets_def(name) for name in names],
                   resources=rooted_resources(data_root))


def bare_trl(config_path: Path) -> dict:
    """The TRL example-script shape, nothing else: load, adapter, trainer, train."""
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from cpo_pipeline.training.config import TrainingConfig

    config = json.loads(config_path.read_text())
    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(config["model"])
    model = AutoModelForImageTextToText.from_pretrained(config["model"])
    train = load_from_disk(config["dataset"])
    lora = LoraConfig(r=8, lora_alpha=32, target_modules="all-linear",
                      exclude_modules=r"model\.vision_tower\..*", modules_to_save=["lm_head"],
                      task_type="CAUSAL_LM")
    common = {"output_dir": config["output_dir"], "max_steps": config["steps"],
              "learning_rate": config["learning_rate"], "lr_scheduler_type": "cosine",
              "adam_beta2": 0.98, "weight_decay": 0.05, "per_device_train_batch_size": 4,
              "max_length": None, "gradient_checkpointing": False, "use_cpu": True,
              # TRL's configs default to bf16 autocast where the CPU has it; the pipeline's
              # default (and the tiny model's) is float32.
              "bf16": False,
              "report_to": [], "save_strategy": "no",
              "logging_steps": TrainingConfig.logging_steps,
              "disable_tqdm": True, "seed": 0}
    if config["stage"] == "sft":
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, warmup_steps=0.1,
                                                         assistant_only_loss=True),
                             train_dataset=train, processing_class=processor, peft_config=lora)
    else:
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=0.1),
                             train_dataset=train, processing_class=processor, peft_config=lora)
    return trainer.train().metrics


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _pipeline(work: Path, stage: str, dataset: Path, model: str, steps: int,
              tag: str) -> tuple[float, float, Path]:
    from cpo_pipeline.training import run_dirs
    from cpo_pipeline.training.config import TINY, TrainingConfig
    from cpo_pipeline.training.launch import launch_command

    run = work / f"pipeline-{stage}-{tag}"
    config = TrainingConfig(stage=stage, dataset_dir=str(dataset), output_dir=str(run),
                            model_name_or_path=model, recipe=TINY, max_steps=steps,
                            eval_samples=0, sample_max_new_tokens=0, dataset_name=dataset.name,
                            mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    wall = _timed(launch_command(config.write(work / f"{run.name}.json")))
    summary = run_dirs.read_summary(run)
    return summary["train_samples_per_second"], wall, run_dirs.model_dir(run)


def _bare(work: Path, stage: str, dataset: Path, model: str, steps: int, tag: str,
          learning_rate: float) -> tuple[float, float]:
    config = work / f"bare-{stage}-{tag}.json"
    result = work / f"bare-{stage}-{tag}.result.json"
    config.write_text(json.dumps({"stage": stage, "dataset": str(dataset), "model": model,
                                  "steps": steps, "learning_rate": learning_rate,
                                  "output_dir": str(work / f"bare-{stage}-{tag}"),
                                  "result": str(result)}))
    wall = _timed([sys.executable, __file__, "--bare", str(config)])
    return json.loads(result.read_text())["train_samples_per_second"], wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--dpo-steps", type=int, default=36)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Before anything is imported or run: the training runs are this process's children and
    # inherit it, and the training sets are materialized here.
    clean_environment()
    if args.bare:
        config = json.loads(args.bare.read_text())
        Path(config["result"]).write_text(json.dumps(bare_trl(args.bare)))
        return 0

    from cpo_pipeline.training.config import DPO, SFT, TINY, TINY_MODEL, TrainingConfig

    rates = {stage: TrainingConfig(stage=stage, recipe=TINY).resolved().learning_rate
             for stage in (SFT, DPO)}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        _training_sets(work / "data")
        sets = work / "data" / "datasets"
        print(f"demo training sets in {time.perf_counter() - started:.1f} s; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        sft_data, dpo_data = sets / "sft_dataset" / "train", sets / "preference_pairs" / "train"
        # The SFT model both DPO figures start from (and the tiny base model, built by it).
        _, _, sft_model = _pipeline(work, SFT, sft_data, TINY_MODEL, args.sft_steps, "start")
        base = str(sft_model.parent / "base_model")
        figures: dict[str, dict[str, list[float]]] = {}
        for repeat in range(args.repeats):
            for stage, data, model, steps in ((SFT, sft_data, base, args.sft_steps),
                                              (DPO, dpo_data, str(sft_model), args.dpo_steps)):
                tag = str(repeat)
                rate, wall = _bare(work, stage, data, model, steps, tag, rates[stage])
                figures.setdefault(f"{stage} bare", {}).setdefault("rate", []).append(rate)
                figures[f"{stage} bare"].setdefault("wall", []).append(wall)
                # The pipeline's SFT builds the same tiny base itself (same texts, same seed).
                pipeline_model = model if stage == DPO else TINY_MODEL
                rate, wall, _ = _pipeline(work, stage, data, pipeline_model, steps, tag)
                figures.setdefault(f"{stage} pipeline", {}).setdefault("rate", []).append(rate)
                figures[f"{stage} pipeline"].setdefault("wall", []).append(wall)

    print(f"{'figure':<16} {'samples/s (median)':>20} {'all repeats':>28} {'process s':>10}")
    for name, values in figures.items():
        rates_seen = " ".join(f"{r:.1f}" for r in values["rate"])
        print(f"{name:<16} {statistics.median(values['rate']):>20.2f} {rates_seen:>28} "
              f"{statistics.median(values['wall']):>10.1f}")
    failed = False
    for stage in (SFT, DPO):
        ratio = (statistics.median(figures[f"{stage} pipeline"]["rate"])
                 / statistics.median(figures[f"{stage} bare"]["rate"]))
        verdict = "ok" if ratio >= TARGET_RATIO else "MISSED"
        failed |= ratio < TARGET_RATIO
        print(f"{stage}: pipeline / bare TRL = {ratio:.3f} (target >= {TARGET_RATIO}) {verdict}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
