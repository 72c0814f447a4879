"""The synthetic CPO experiment (issue 13): does CPO beat SFT and random-negative DPO here?

Writes one synthetic MIMIC-CXR cohort (`write_demo_tree`; 64x64 phantoms, which the tiny model
sees at 32x32, where a linear probe already tells No Finding, Cardiomegaly, Edema and effusion
apart), materializes the real assets through Dagster from the raw tree to the four training
sets, then for each seed materializes `sft_model`, `cpo_model`, `dpo_random_model`,
`cpo_no_cot_model` and `model_evaluation` with that seed in their run config: the same code
path as `dagster asset materialize`, nothing trained or scored beside it.

What it prints, per method over the seeds:
- top-1 accuracy per finding (the paper's five) and the averages, as the mean over seeds with a
  95% interval from a patient bootstrap of the seed-averaged per-study correctness (the test
  set is the same for every seed, so one resample of patients covers every seed), and the
  seed-to-seed standard deviation;
- CPO minus each other method, with the same paired bootstrap interval: the figure that says
  whether CPO beat a baseline here, and how surely;
- the answer-line likelihood AUCs and the drift probes, averaged over the seeds.
`--json` writes all of it, each seed's figures included.

    .venv/bin/python benchmarks/bench_cpo_synthetic.py [--quick] [--seeds 0 1 2] [--json out.json]

`--quick` is the reduced version (a smaller cohort, fewer SFT epochs) that runs in CI time; the
default is the full experiment, whose table the README quotes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Also importable by path (cpo_pipeline_tests/training/test_bench_cpo_synthetic.py), not only
# run as a script, which puts this folder on sys.path itself.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import (
    add_cohort_arguments,
    build_cohort,
    clean_environment,
    experiment_root,
    materialize_under,
    read_studies,
)

METHODS = ("sft_model", "cpo_model", "dpo_random_model", "cpo_no_cot_model")
# Full: 2,500 patients (about 3,800 SFT examples, 5,400 CPO pairs, 480 test studies). Without
# its vision pretraining the tiny model answered every test study alike even at 4,000 patients;
# with it, 4,000 patients' SFT told No Finding apart (0.84 against a 0.59 majority). 2,500 is
# what three seeds of four methods fit into the hour on two cores. The held-out pairs' probes
# are capped (`max_pairs`): they cost the most per item and their intervals are not the
# question here. Quick: 300 patients, the plumbing and the figures' shape in CI time; at that
# size the models learn little, so its numbers are not the experiment's.
FULL = {"patients": 2500, "sft_epochs": 2.0, "max_pairs": 300}
QUICK = {"patients": 300, "sft_epochs": 2.0, "max_pairs": 100}


def train_and_evaluate(data_root: Path, seed: int, sft_epochs: float, resamples: int,
                       max_pairs: int = 0, sft: dict | None = None, dpo: dict | None = None,
                       batch_size: int = 32) -> Path:
    """One seed: the four models and their evaluation; returns the evaluation's folder. `sft`
    and `dpo`: more of the training run config (the GPU script's sizes and precision)."""
    common = {"seed": seed, "report_to": "none", "eval_samples": 0, "sample_max_new_tokens": 0}
    ops = {"sft_model": {"config": {**common, "num_train_epochs": sft_epochs, **(sft or {})}}}
    ops.update({name: {"config": {**common, **(dpo or {})}} for name in METHODS[1:]})
    ops["model_evaluation"] = {"config": {"resamples": resamples, "seed": seed, "meteor": False,
                                          "max_new_tokens": 128, "batch_size": batch_size,
                                          "max_pairs": max_pairs}}
    result = materialize_under(data_root, [*METHODS, "model_evaluation"], {"ops": ops})
    materialization = result.asset_materializations_for_node("model_evaluation")[0]
    return Path(materialization.metadata["report_path"].value).parent


def correct_answers(folder: Path, studies: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per method, a (test study x answer label) 0/1 table of correct answers, rows in study
    order, from the evaluation's generations."""
    from cpo_pipeline.evaluation.classification import (
        ANSWER_LABELS,
        correct_matrix,
        reference_answers,
    )
    from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

    generations = pd.read_parquet(folder / "generations.parquet")
    tables = {}
    for method, rows in generations.groupby("model"):
        rows = rows.sort_values("study_id").reset_index(drop=True)
        labels = studies.set_index("study_id").loc[rows["study_id"], list(CHEXPERT_LABELS)]
        correct = correct_matrix(rows, reference_answers(labels.reset_index(drop=True)))
        tables[method] = pd.DataFrame(correct.astype(float), columns=list(ANSWER_LABELS),
                                      index=rows["study_id"].to_numpy())
        tables[method].attrs["subject_id"] = rows["subject_id"].to_numpy()
    return tables


def _columns(correct: pd.DataFrame) -> dict[str, np.ndarray]:
    from cpo_pipeline.evaluation.classification import AVERAGE_ALL, AVERAGE_FIVE, PAPER_FIVE

    columns = {name: correct[name].to_numpy() for name in PAPER_FIVE}
    columns["No Finding"] = correct["No Finding"].to_numpy()
    columns[AVERAGE_FIVE] = correct[list(PAPER_FIVE)].to_numpy().mean(axis=1)
    columns[AVERAGE_ALL] = correct.to_numpy().mean(axis=1)
    return columns


def aggregate(per_seed: list[dict[str, pd.DataFrame]], figures: list[dict],
              resamples: int) -> dict:
    """Mean over seeds with patient-bootstrap intervals, CPO's paired differences, and the
    seeds' AUCs and probes averaged."""
    from cpo_pipeline.evaluation.resampling import mean_interval, resample_weights

    groups = per_seed[0][METHODS[0]].attrs["subject_id"]
    weights = resample_weights(groups, resamples, 0)
    methods = [m for m in METHODS if all(m in seed for seed in per_seed)]
    pooled = {m: _columns(sum(seed[m] for seed in per_seed) / len(per_seed)) for m in methods}
    accuracy = {}
    for method in methods:
        accuracy[method] = {}
        for label, values in pooled[method].items():
            interval = mean_interval(values, groups, weights=weights)
            seeds = [float(_columns(seed[method])[label].mean()) for seed in per_seed]
            accuracy[method][label] = {
                "accuracy": interval.value, "ci_low": interval.low, "ci_high": interval.high,
                "seed_sd": statistics.stdev(seeds) if len(seeds) > 1 else 0.0, "seeds": seeds}
    differences = {}
    for other in methods:
        if other == "cpo_model" or "cpo_model" not in pooled:
            continue
        differences[f"cpo_model - {other}"] = {}
        for label in pooled["cpo_model"]:
            delta = pooled["cpo_model"][label] - pooled[other][label]
            interval = mean_interval(delta, groups, weights=weights)
            differences[f"cpo_model - {other}"][label] = {
                "difference": interval.value, "ci_low": interval.low, "ci_high": interval.high}
    auc, probes = {}, {}
    for method in methods:
        rows = [row for seed in figures for row in seed[method]["auc"]]
        frame = pd.DataFrame(rows)
        auc[method] = frame.groupby("label")["auc"].mean().to_dict() if len(frame) else {}
        keys = {key for seed in figures for key in seed[method]["probes"]}
        probes[method] = {key: float(np.nanmean([seed[method]["probes"].get(key, np.nan)
                                                 for seed in figures]))
                          for key in sorted(keys)
                          if all(isinstance(seed[method]["probes"].get(key, 0.0), (int, float))
                                 for seed in figures)}
    return {"accuracy": accuracy, "cpo_minus": differences, "auc": auc, "probes": probes}


def evaluate_seeds(data_root: Path, seeds: list[int], resamples: int, timings: dict[str, float],
                   budget_s: int | None = None, **training) -> dict:
    """Each seed's `train_and_evaluate` (`training`: its other arguments), timed into `timings`
    and reported as it ends (beside `budget_s`, the GPU run's); returns `aggregate`'s summary
    with each seed's figures."""
    studies = read_studies(data_root)
    per_seed, figures = [], []
    for seed in seeds:
        began = time.perf_counter()
        folder = train_and_evaluate(data_root, seed, resamples=resamples, **training)
        per_seed.append(correct_answers(folder, studies))
        figures.append(json.loads((folder / "figures.json").read_text()))
        seconds = timings[f"seed_{seed}_s"] = time.perf_counter() - began
        print(f"seed {seed}: trained and evaluated in {seconds:.0f} s" if budget_s is None
              else f"seed {seed}: {seconds:.0f} s (budget {budget_s} s)", flush=True)
    return {**aggregate(per_seed, figures, resamples), "per_seed_figures": figures}


def print_summary(summary: dict) -> None:
    from cpo_pipeline.evaluation.classification import AVERAGE_ALL, AVERAGE_FIVE, PAPER_FIVE

    labels = [*PAPER_FIVE, "No Finding", AVERAGE_FIVE, AVERAGE_ALL]
    print("\ntop-1 accuracy: mean over seeds [95% patient-bootstrap interval] (seed sd)")
    for method, rows in summary["accuracy"].items():
        print(f"  {method}")
        for label in labels:
            r = rows[label]
            print(f"    {label:22s} {r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
                  f" (sd {r['seed_sd']:.3f})")
    print("\nCPO minus each method (paired, same studies) [95% interval]")
    for name, rows in summary["cpo_minus"].items():
        cells = ", ".join(f"{label} {rows[label]['difference']:+.3f} [{rows[label]['ci_low']:+.3f},"
                          f" {rows[label]['ci_high']:+.3f}]" for label in (AVERAGE_FIVE, AVERAGE_ALL))
        print(f"  {name}: {cells}")
    print("\nanswer-line likelihood AUC (mean over seeds)")
    for method, rows in summary["auc"].items():
        print(f"  {method}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows.items()
                                          if k in (*PAPER_FIVE, 'No Finding')))
    print("\ndrift probes (mean over seeds)")
    for method, rows in summary["probes"].items():
        print(f"  {method}: " + "; ".join(f"{k} {v:.3f}" for k, v in rows.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced version (CI time)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--patients", type=int, help="cohort size (default: full 2500, "
                        "quick 300)")
    add_cohort_arguments(parser)
    args = parser.parse_args()
    clean_environment()
    plan = dict(QUICK if args.quick else FULL)
    if args.patients:
        plan["patients"] = args.patients
    with experiment_root(args.data_root) as data_root:
        started = time.perf_counter()
        cohort = build_cohort(data_root, plan["patients"], args.cohort_seed)
        timings = {"cohort_s": time.perf_counter() - started}
        print(f"cohort: {cohort} ({timings['cohort_s']:.0f} s)", flush=True)
        summary = evaluate_seeds(data_root, args.seeds, args.resamples, timings,
                                 sft_epochs=plan["sft_epochs"], max_pairs=plan["max_pairs"])
    timings["total_s"] = time.perf_counter() - started
    print_summary(summary)
    print(f"\nwall: {timings['total_s']:.0f} s ({'quick' if args.quick else 'full'}; "
          f"target {'< 600' if args.quick else '<= 3600'} s)")
    if args.json:
        args.json.write_text(json.dumps({
            "plan": plan, "seeds": args.seeds, "cohort": cohort, "timings": timings, **summary},
            indent=1, default=float))


if __name__ == "__main__":
    main()
