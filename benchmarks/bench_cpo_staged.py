"""The staged CPO experiment (issue 13): tuning across time-ordered stages whose label mix drifts.

Writes a synthetic MIMIC-CXR cohort whose label mix moves along each patient's course
(`DemoConfig.drift`: fewer normal studies and more edema and effusion at later visits, so the
time-ordered `cxr_studies.stage` column really is non-stationary), materializes the data assets
through Dagster as `bench_cpo_synthetic.py` does, then `staged_training_sets`, `staged_models`
and `staged_evaluation` with one run config per reference: SFT on stage 0, each method (continued
SFT, CPO, random-negative DPO, CPO without CoT) tuned stage after stage from its previous
stage's model, every model scored on every stage's test studies. The same assets a user runs
from the UI (job `staged_tuning`); nothing is trained or scored beside them.

What it prints, per reference ('sft': the stage-0 SFT model; 'previous': the model the stage
starts from) and method:
- the average-five accuracy matrix (after stage k x test stage j) and the final model's
  accuracy per test stage with its 95% patient-bootstrap interval;
- forgetting (Chaudhry et al.) and backward transfer;
- the exact-answer matrix;
- the drift probes after each stage;
and, once per reference, the floor (every answer "No Finding") on both figures.
`--json` writes the staged evaluations' figures with the plan and timings.

    .venv/bin/python benchmarks/bench_cpo_staged.py [--quick] [--json out.json]

One training seed: the intervals are over test patients, not seeds (the unstaged experiment,
`bench_cpo_synthetic.py`, is the one with three seeds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_support import (
    add_cohort_arguments,
    build_cohort,
    clean_environment,
    experiment_root,
    materialize_under,
)

# Full: 5,000 patients with drift 0.8, where the train studies' No Finding share falls from
# about 0.4 in stage 0 to about 0.2 in stage 2 and Edema's rises from about 0.06 to 0.2 (flat
# with no drift), so a stage-0 model meets a different label mix later. The size is set by
# the stage-0 SFT model, which must read the images before tuning on later stages can mean
# anything: with 1,200 and 2,000 patients (650 and 851 stage-0 train studies, 3 to 10 epochs)
# it answered "No Finding." for every test study; with 5,000 (2,111 stage-0 train studies,
# 8 epochs, about the unstaged SFT's example count) its exact answers clear the all-No-Finding
# floor and no model answers one line. Training takes about a minute or three a run, the
# evaluation five to six minutes per reference for twelve models (the probes cover 100 test
# studies and 60 pairs, accuracy every test study); both references fit the hour (the second
# reuses the SFT runs and the stage-0 DPO runs). Quick: 300 patients, the plumbing and the
# figures' shape in CI time (continued SFT and CPO, reference sft; each training run takes
# 12-20 s on two cores, start-up included); its models learn little.
METHODS = ["sft", "cpo", "dpo_random", "cpo_no_cot"]
FULL = {"patients": 5000, "drift": 0.8, "sft_epochs": 8.0, "max_pairs": 60,
        "probe_studies": 100, "methods": METHODS, "references": ["sft", "previous"]}
QUICK = {"patients": 300, "drift": 0.8, "sft_epochs": 2.0, "max_pairs": 30,
         "probe_studies": 30, "methods": ["sft", "cpo"], "references": ["sft"]}


def run_config(plan: dict, reference: str, seed: int, resamples: int) -> dict:
    common = {"seed": seed, "report_to": "none", "eval_samples": 0, "sample_max_new_tokens": 0}
    return {"ops": {
        "staged_models": {"config": {
            "reference": reference, "methods": plan["methods"],
            "sft": {**common, "num_train_epochs": plan["sft_epochs"]},
            "dpo": common}},
        "staged_evaluation": {"config": {
            "resamples": resamples, "seed": seed, "max_new_tokens": 128, "batch_size": 32,
            "max_pairs": plan["max_pairs"], "probe_studies": plan["probe_studies"]}},
    }}


def staged(data_root: Path, plan: dict, reference: str, seed: int, resamples: int) -> dict:
    """Materialize the staged assets with `reference`; returns the evaluation's staged.json."""
    result = materialize_under(data_root, ["staged_training_sets", "staged_models",
                                           "staged_evaluation"],
                               run_config(plan, reference, seed, resamples))
    materialization = result.asset_materializations_for_node("staged_evaluation")[0]
    folder = Path(materialization.metadata["report_path"].value).parent
    models = result.asset_materializations_for_node("staged_models")[0]
    summary = json.loads((folder / "staged.json").read_text())
    summary["trained_this_run"] = models.metadata["trained_this_run"].value
    summary["report"] = str(folder / "report.md")
    summary["answer_lines"] = _answer_lines(folder)
    return summary


def _answer_lines(folder: Path) -> dict[str, dict[str, int]]:
    """Per model (data version): how many test studies got each answer line, the most common
    first. A model with one line for every study is answering the prevalence, not the image:
    its matrix row then moves only with each stage's label mix."""
    import pandas as pd

    generations = pd.read_parquet(folder / "generations.parquet")
    lines = generations["text"].str.extract(r"The disease of this patient is (.*)$")[0]
    return {version: lines[rows.index].fillna("(unparsed)").value_counts().head(5).to_dict()
            for version, rows in generations.groupby("model_version")}


def _print(reference: str, summary: dict) -> None:
    from cpo_pipeline.evaluation.classification import AVERAGE_FIVE, EXACT, MACRO_F1_FIVE

    stages = sorted(summary["test_studies"], key=int)

    def cells(row: dict) -> str:
        return "  ".join(f"{row[j]:.3f}" for j in stages)

    print(f"\nreference = {reference}; test studies per stage "
          + ", ".join(f"{j}: {summary['test_studies'][j]}" for j in stages))
    print(f"  sft (stage 0)      {cells(summary['initial'])}   (exact answer "
          f"{cells(summary['initial_exact'])})")
    print(f"  all 'No Finding'   {cells(summary['floor'][AVERAGE_FIVE])}   (exact answer "
          f"{cells(summary['floor'][EXACT])}: the floor)")
    print(f"  macro-F1 (five): sft (stage 0) {cells(summary['initial_macro_f1_five'])}; "
          f"floor {cells(summary['floor'][MACRO_F1_FIVE])}")
    constant = [version[:12] for version, counts in summary["answer_lines"].items()
                if len(counts) == 1]
    print(f"  models answering every test study with one answer line: {len(constant)} of "
          f"{len(summary['answer_lines'])}")
    for method, figures in summary["methods"].items():
        print(f"  {method}: average-five accuracy, rows after stage k, columns test stage j")
        for k, row in sorted(figures["matrix"].items(), key=lambda item: int(item[0])):
            print(f"    after {k}           {cells(row)}")
        last = max(figures["per_stage"], key=int)
        for label in (MACRO_F1_FIVE, AVERAGE_FIVE):
            final = [r for r in figures["per_stage"][last] if r["label"] == label]
            print(f"    final {label}, 95% CI  " + "  ".join(
                f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" for r in final))
        forgetting, transfer = (("n/a" if figures[name] is None else f"{figures[name]:+.3f}")
                                for name in ("forgetting", "backward_transfer"))
        print(f"    final mean {figures['final_mean']:.3f}; forgetting {forgetting}; "
              f"backward transfer {transfer}")
        for name, key in (("macro-F1 (five)", "macro_f1_five_matrix"),
                          ("exact answer", "exact_matrix"), ("parse rate", "parse_rate_matrix")):
            print(f"    {name}, rows after stage k")
            for k, row in sorted(figures[key].items(), key=lambda item: int(item[0])):
                print(f"    after {k}           {cells(row)}")
        for k, probes in sorted(figures["probes"].items(), key=lambda item: int(item[0])):
            print(f"    probes after {k}: " + "; ".join(
                f"{name} {'n/a' if value is None else f'{value:.3f}'}"
                for name, value in probes.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced version (CI time)")
    parser.add_argument("--references", nargs="+", choices=["sft", "previous"],
                        help="DPO references to run (default: full both, quick sft)")
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        help="methods to tune (default: full all four, quick sft and cpo)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed")
    parser.add_argument("--patients", type=int, help="cohort size (default: full 5000, "
                        "quick 300)")
    parser.add_argument("--drift", type=float, help="DemoConfig.drift (default 0.8)")
    parser.add_argument("--sft-epochs", type=float, help="epochs of the stage-0 SFT")
    add_cohort_arguments(parser)
    args = parser.parse_args()
    clean_environment()
    plan = dict(QUICK if args.quick else FULL)
    plan.update({key: value for key, value in (
        ("patients", args.patients), ("drift", args.drift), ("methods", args.methods),
        ("references", args.references), ("sft_epochs", args.sft_epochs)) if value is not None})
    results, timings = {}, {}
    with experiment_root(args.data_root) as data_root:
        started = time.perf_counter()
        cohort = build_cohort(data_root, plan["patients"], args.cohort_seed, plan["drift"])
        timings["cohort_s"] = time.perf_counter() - started
        print(f"cohort: {cohort} ({timings['cohort_s']:.0f} s)", flush=True)
        for reference in plan["references"]:
            began = time.perf_counter()
            results[reference] = staged(data_root, plan, reference, args.seed, args.resamples)
            timings[f"{reference}_s"] = time.perf_counter() - began
            print(f"reference {reference}: {results[reference]['trained_this_run']} runs "
                  f"trained, evaluated in {timings[f'{reference}_s']:.0f} s", flush=True)
    timings["total_s"] = time.perf_counter() - started
    for reference, summary in results.items():
        _print(reference, summary)
    print(f"\nwall: {timings['total_s']:.0f} s ({'quick' if args.quick else 'full'}; "
          f"target {'< 600' if args.quick else '<= 3600'} s)")
    if args.json:
        args.json.write_text(json.dumps({"plan": plan, "seed": args.seed, "cohort": cohort,
                                         "timings": timings, "references": results},
                                        indent=1, default=float))


if __name__ == "__main__":
    main()
