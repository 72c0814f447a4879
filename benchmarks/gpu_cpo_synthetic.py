"""The synthetic CPO experiment on one GPU (issues 13, 28): a larger model, a larger cohort.

The same protocol as `bench_cpo_synthetic.py` (selection on validate over the same grid,
the gate, final runs on test over the seeds) with what a GPU affords:
- the model: the offline LLaVA layout (CLIP tower, Llama decoder) at its 'small' size
  (`tiny_model.OFFLINE_SIZES`, about 38 M parameters, 64 image tokens), built from its config
  with a locally trained tokenizer, in bfloat16; or `--model DIR`, a local checkpoint of a real
  small VLM (e.g. a Qwen2-VL-2B-Instruct or SmolVLM directory you brought; nothing is
  downloaded), trained with the paper's recipe (LoRA r 8, lr 1e-4 / 2e-5);
- the cohort: 5,000 patients (about 10,000 studies) where the CPU run has 2,500;
- the batches: 32 SFT examples and 16 preference pairs per step.

    .venv/bin/python benchmarks/gpu_cpo_synthetic.py --json gpu.json [--seeds 0 1 2]

Needs CUDA torch (the training extra on a CUDA base image, see docker/); it stops at once
without a GPU. Its wall time has not been measured: no GPU was lent to the sessions that wrote
it; it prints the total beside a 32-minute budget (cohort 2, experiment 30).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from bench_cpo_synthetic import FULL, run
from bench_support import add_cohort_arguments, build_cohort, clean_environment, experiment_root

PATIENTS = 5000
BUDGET_S = {"cohort": 120, "experiment": 1800}
# What differs from the CPU run's training config. With the offline model: its larger size,
# bfloat16, GPU-sized batches. With --model: the paper's recipe decides the rest.
SFT = {"bf16": True, "use_cpu": False, "per_device_train_batch_size": 32}
DPO = {"bf16": True, "use_cpu": False, "per_device_train_batch_size": 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--patients", type=int, default=PATIENTS)
    parser.add_argument("--model", type=Path, help="a local VLM checkpoint directory to start "
                        "from instead of the offline model (CPO_POLICY_MODEL)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="processes decoding images and reading reports")
    add_cohort_arguments(parser)
    args = parser.parse_args()
    clean_environment()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this is the GPU version of the experiment; on a CPU "
                         "run benchmarks/bench_cpo_synthetic.py")
    sft, dpo = dict(SFT), dict(DPO)
    if args.model:
        if not (args.model / "config.json").is_file():
            raise SystemExit(f"{args.model} has no config.json: --model takes a local "
                             "checkpoint directory")
        os.environ["CPO_POLICY_MODEL"] = str(args.model.resolve())
        sft["gradient_checkpointing"] = dpo["gradient_checkpointing"] = True
    else:
        sft["tiny_model_size"] = "small"
    plan = replace(FULL, patients=args.patients, sft=sft, later=dpo)
    described = {"model": str(args.model or "offline small"),
                 "gpu": torch.cuda.get_device_name(0)}
    data_config = {"ops": {"mimic_cxr_ingestion": {"config": {"workers": args.workers}},
                           "concept_graph": {"config": {"workers": args.workers}}}}
    with experiment_root(args.data_root) as data_root:
        started = time.perf_counter()
        cohort = build_cohort(data_root, args.patients, args.cohort_seed, run_config=data_config)
        cohort_s = time.perf_counter() - started
        print(f"cohort: {cohort} ({cohort_s:.0f} s; budget {BUDGET_S['cohort']} s)", flush=True)
        result = run(data_root, plan, args.seeds, args.resamples)
    total_s = time.perf_counter() - started
    print(f"\nwall: {total_s:.0f} s (budget {BUDGET_S['cohort'] + BUDGET_S['experiment']} s)")
    if args.json:
        args.json.write_text(json.dumps({**result, **described, "cohort": cohort,
                                         "timings": {**result["timings"], "cohort_s": cohort_s,
                                                     "total_s": total_s}},
                                        indent=1, default=float))


if __name__ == "__main__":
    main()
