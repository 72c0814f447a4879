"""The staged CPO experiment under the declared protocol (issues 13, 28): each method tuned stage
after stage on a cohort whose label mix drifts; does CPO beat SFT, continued SFT,
random-negative DPO and CPO without CoT there?

The protocol is written down in benchmarks/README.md before any run; this script is it:

1. One synthetic cohort with `DemoConfig.drift` (later visits sicker: the time-ordered
   `cxr_studies.stage` column is non-stationary), the real assets through Dagster to the four
   training sets, then `staged_training_sets`.
2. Configurations: each method's, as the unstaged protocol selected it on validate
   (`--selected`, by default `results_cpo_synthetic_2500.json`: same model, grid and selection
   rule); the staged experiment does not select again. `--defaults`: the recipes' own instead.
3. The gate, seed 0: the stage-0 SFT model on the validate split (every stage's studies)
   must be >= 15 points above the all-"No Finding" floor on exact answers and reach macro-F1
   0.40 over the five (`bench_cpo_synthetic.gate`), or no method comparison is printed.
4. Final runs, each seed: `staged_models` (SFT on stage 0; continued SFT step-matched to CPO,
   CPO, random-negative DPO and CPO without CoT, stage after stage; the DPO reference the
   stage-0 SFT model) and `staged_evaluation` on test, scored once. Seed 0 scores every stage's
   model (the after-stage-k x test-stage matrices, forgetting); the other seeds the models
   after the last stage only (`final_only`).
5. Figures: each method's model after the last stage against the stage-0 SFT model and the
   floor over every stage's test studies, the mean over seeds with a 95% patient-bootstrap
   interval (one set of resamples for every model and seed), CPO minus each other model on the
   same draws (`bench_cpo_synthetic.aggregate`); seed 0's matrices per method.

    .venv/bin/python benchmarks/bench_cpo_staged.py [--quick] [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpo_synthetic import (
    CONTINUED,
    CPO,
    GENERATION,
    METHODS,
    QUIET_TRAINING,
    SFT_METHOD,
    aggregate,
    answers_of,
    gate,
    print_summary,
)
from bench_support import (
    add_cohort_arguments,
    build_cohort,
    clean_environment,
    experiment_root,
    materialize_under,
    read_studies,
)

# staged_models' method names and the unstaged models' they stand for.
STAGED_NAMES = {"sft": CONTINUED, "cpo": CPO, "dpo_random": "dpo_random_model",
                "cpo_no_cot": "cpo_no_cot_model"}
STAGE_ZERO = f"{SFT_METHOD} (stage 0)"
DEFAULT_SELECTION = Path(__file__).resolve().parent / "results_cpo_synthetic_2500.json"


@dataclass(frozen=True)
class Plan:
    """Sizes, declared before the run (benchmarks/README.md)."""

    patients: int
    drift: float
    sft_epochs: float
    methods: tuple[str, ...]
    probes: int
    max_pairs: int
    reference: str = "sft"
    # More run config (a test's step caps): the stage-0 SFT's, every later run's.
    sft: Mapping = field(default_factory=dict)
    later: Mapping = field(default_factory=dict)


# Full: 5,000 patients with drift 0.8 (the train studies' No Finding share falls from about
# 0.4 in stage 0 to 0.2 in stage 2, Edema's rises from 0.06 to 0.2); the stage-0 SFT, on
# about 2,100 train studies, is the one that must read the images. Quick: the plumbing and the
# figures' shape in CI time.
FULL = Plan(patients=5000, drift=0.8, sft_epochs=8.0, methods=tuple(STAGED_NAMES), probes=60,
            max_pairs=60)
QUICK = Plan(patients=300, drift=0.8, sft_epochs=2.0, methods=("sft", "cpo"), probes=10,
             max_pairs=10)


def selected_configs(selection: Mapping | None) -> dict[str, dict]:
    """Per unstaged method its chosen configuration (`selection`: an unstaged run's JSON's
    "selection"), or {} each (the recipes' defaults) without one."""
    if selection is None:
        return {method: {} for method in METHODS}
    if selection[SFT_METHOD]["gate"]:
        raise SystemExit("the unstaged selection did not pass its gate ("
                         + "; ".join(selection[SFT_METHOD]["gate"]) + "): nothing to run with")
    missing = [m for m in METHODS if m not in selection or selection[m]["chosen"] is None]
    if missing:
        raise SystemExit(f"the unstaged selection chose no configuration for {missing}")
    return {method: dict(selection[method]["chosen"]["config"]) for method in METHODS}


def run_config(plan: Plan, configs: Mapping[str, Mapping], seed: int, *, split: str,
               methods: Sequence[str], final_only: bool, resamples: int) -> dict:
    """The staged assets' run config: `methods` tuned at their configurations, at `seed`."""
    common = {"seed": seed, **QUIET_TRAINING}
    models = {"reference": plan.reference, "methods": list(methods),
              "sft": {**common, "num_train_epochs": plan.sft_epochs, **plan.sft,
                      **configs[SFT_METHOD]},
              "dpo": {**common, **plan.later}}
    for method in methods:
        field_name = "continued_sft" if method == "sft" else method
        models[field_name] = {**common, **plan.later, **configs[STAGED_NAMES[method]]}
    evaluation = {"split": split, "final_only": final_only, "resamples": resamples, "seed": 0,
                  **GENERATION, "max_pairs": plan.max_pairs,
                  "probe_studies": plan.probes}
    return {"ops": {"staged_models": {"config": models},
                    "staged_evaluation": {"config": evaluation}}}


def staged(data_root: Path, plan: Plan, configs: Mapping[str, Mapping], seed: int, *,
           split: str, methods: Sequence[str] | None = None, final_only: bool = False,
           resamples: int = 200) -> tuple[Path, dict, dict]:
    """Train (or reuse) the stage-0 SFT model and `methods`' (default the plan's) staged models
    at `seed`, score them on `split`: the evaluation's folder, its staged.json and
    staged_models' manifest."""
    from cpo_pipeline import data_layout

    result = materialize_under(
        data_root, ["staged_training_sets", "staged_models", "staged_evaluation"],
        run_config(plan, configs, seed, split=split,
                   methods=plan.methods if methods is None else methods,
                   final_only=final_only, resamples=resamples))
    [materialization] = result.asset_materializations_for_node("staged_evaluation")
    folder = Path(materialization.metadata["report_path"].value).parent
    manifest = json.loads((data_layout.staged_datasets(data_root) / "models.json").read_text())
    return folder, json.loads((folder / "staged.json").read_text()), manifest


def final_answers(folder: Path, manifest: Mapping, studies) -> dict:
    """One seed's parsed answers per model, named as the unstaged models: the stage-0 SFT model
    and each method's model after the last stage; with the references and patients."""
    from cpo_pipeline.evaluation.staged import INITIAL

    by_version, reference, subjects = answers_of(folder, studies, column="model_version")
    runs = manifest["runs"]
    answers = {STAGE_ZERO: by_version[runs[INITIAL][0]["data_version"]]}
    for method, entries in runs.items():
        if method != INITIAL:
            answers[STAGED_NAMES[method]] = by_version[entries[-1]["data_version"]]
    return {"answers": answers, "reference": reference, "subjects": subjects}


def staged_gate(folder: Path, manifest: Mapping, studies, resamples: int) -> tuple[dict, dict,
                                                                                  list[str]]:
    """From a validate evaluation of the stage-0 SFT model: its and the floor's figures, and
    why the testbed cannot compare methods (empty: it can)."""
    from cpo_pipeline.evaluation.classification import EXACT, MACRO_F1_FIVE

    figures = aggregate([final_answers(folder, manifest, studies)], resamples)["figures"]

    def named(rows: Mapping) -> dict[str, float]:
        return {"exact_answer": rows[EXACT]["value"], "macro_f1_five": rows[MACRO_F1_FIVE]["value"]}

    sft, floor = named(figures[STAGE_ZERO]), named(figures["floor"])
    return sft, floor, gate(sft, floor)


def final_runs(data_root: Path, plan: Plan, configs: Mapping[str, Mapping],
               seeds: Sequence[int], resamples: int, timings: dict) -> tuple[list[dict], dict]:
    """Each seed's staged models trained and scored on test: per seed the final models' parsed
    answers (`final_answers`), and the first seed's staged.json (its matrices)."""
    studies = read_studies(data_root)
    per_seed, matrices = [], {}
    for index, seed in enumerate(seeds):
        began = time.perf_counter()
        folder, summary, manifest = staged(data_root, plan, configs, seed, split="test",
                                           final_only=index > 0, resamples=resamples)
        per_seed.append({"seed": seed, **final_answers(folder, manifest, studies)})
        matrices = matrices or summary
        timings[f"seed_{seed}_s"] = time.perf_counter() - began
        print(f"seed {seed}: trained and scored in {timings[f'seed_{seed}_s']:.0f} s", flush=True)
    return per_seed, matrices


def run(data_root: Path, plan: Plan, configs: Mapping[str, Mapping], seeds: Sequence[int],
        resamples: int, save=lambda result: None) -> dict:
    """The staged protocol: the gate on validate, then each seed's final runs on test."""
    timings: dict[str, float] = {}
    result: dict = {"plan": asdict(plan), "seeds": list(seeds), "configs": dict(configs),
                    "timings": timings}
    began = time.perf_counter()
    folder, _, manifest = staged(data_root, plan, configs, seeds[0], split="validate",
                                 methods=[], resamples=resamples)
    sft, floor, reasons = staged_gate(folder, manifest, read_studies(data_root), resamples)
    timings["gate_s"] = time.perf_counter() - began
    result["gate"] = {"sft": sft, "floor": floor, "reasons": reasons}
    save(result)
    print(f"\ngate (validate, seed {seeds[0]}): stage-0 SFT exact {sft['exact_answer']:.3f}, "
          f"macro-F1 five {sft['macro_f1_five']:.3f}; floor exact {floor['exact_answer']:.3f}",
          flush=True)
    if reasons:
        print("\nno method comparison: the testbed cannot show one, because "
              + "; ".join(reasons))
        return result
    per_seed, matrices = final_runs(data_root, plan, configs, seeds, resamples, timings)
    result.update(aggregate(per_seed, resamples))
    result["matrices_seed_0"] = matrices
    print_summary(result)
    print_matrices(matrices)
    return result


def print_matrices(summary: Mapping) -> None:
    """Seed 0's matrices: macro-F1 (five) and exact answers after stage k on each test stage."""
    from cpo_pipeline.evaluation.classification import MACRO_F1_FIVE

    stages = sorted(summary["test_studies"], key=int)

    def cells(row: Mapping) -> str:
        return "  ".join(f"{row[j]:.3f}" for j in stages)

    print("\nseed 0, rows after training stage k, columns test stage j (test studies "
          + ", ".join(f"{j}: {summary['test_studies'][j]}" for j in stages) + ")")
    print(f"  {'floor macro-F1 five':32s} {cells(summary['floor'][MACRO_F1_FIVE])}")
    print(f"  {'stage-0 SFT macro-F1 five':32s} {cells(summary['initial_macro_f1_five'])}")
    for method, figures in summary["methods"].items():
        for k, row in sorted(figures["macro_f1_five_matrix"].items(), key=lambda i: int(i[0])):
            print(f"  {method + ' after ' + k + ' macro-F1 five':32s} {cells(row)}   "
                  f"exact {cells(figures['exact_matrix'][k])}")
        forgetting = figures["forgetting_macro_f1_five"]
        print(f"  {method + ' forgetting (macro-F1 five)':32s} "
              f"{'n/a' if forgetting is None else f'{forgetting:+.3f}'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced version (CI time)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--patients", type=int, help="cohort size (default: full 5000, "
                        "quick 300)")
    parser.add_argument("--selected", type=Path, help="the unstaged run's JSON whose "
                        f"selection to use (default: {DEFAULT_SELECTION.name})")
    parser.add_argument("--defaults", action="store_true",
                        help="the recipes' default configurations, no selection")
    add_cohort_arguments(parser)
    args = parser.parse_args()
    clean_environment()
    plan = QUICK if args.quick else FULL
    if args.patients:
        plan = replace(plan, patients=args.patients)
    selection = None
    if not (args.defaults or args.quick):
        selection = json.loads((args.selected or DEFAULT_SELECTION).read_text())["selection"]
    configs = selected_configs(selection)
    with experiment_root(args.data_root) as data_root:
        started = time.perf_counter()
        cohort = build_cohort(data_root, plan.patients, args.cohort_seed, plan.drift)
        cohort_s = time.perf_counter() - started
        print(f"cohort: {cohort} ({cohort_s:.0f} s)", flush=True)

        def save(partial: dict) -> None:
            if args.json:
                args.json.write_text(json.dumps({**partial, "cohort": cohort}, indent=1,
                                                default=float))

        result = run(data_root, plan, configs, args.seeds, args.resamples, save)
    result["timings"].update(cohort_s=cohort_s, total_s=time.perf_counter() - started)
    result["cohort"] = cohort
    print(f"\nwall: {result['timings']['total_s']:.0f} s ({'quick' if args.quick else 'full'}; "
          f"target {'< 600' if args.quick else '<= 3600 for the final runs'} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
