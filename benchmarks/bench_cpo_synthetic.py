"""The synthetic CPO experiment under a declared protocol (issues 13, 28): does CPO beat SFT,
continued SFT, random-negative DPO and CPO without CoT here?

The protocol is written down in benchmarks/README.md before any run; this script is it:

1. One synthetic cohort (`bench_support.build_cohort`: 128x128 phantoms, which the tiny model
   sees at 64x64), the real assets through Dagster from the raw tree to the four training sets.
2. Selection, seed 0, on the validate split only: SFT over its grid; the gate (SFT must be
   >= 15 points above the all-"No Finding" floor on exact answers and reach macro-F1 0.40 over
   the five, or no method comparison is printed); then from the chosen SFT each later method
   over the same grid (learning rate x NLL weight for the three preference methods, learning
   rate for continued SFT). Each method's choice: the highest answer-line macro-F1 over the
   five among its configurations that parse >= 95% (ties: exact answers). The default
   configuration of each method is scored beside.
3. Final runs, each seed (each retraining SFT), the selected configurations, scored once on
   test; CPO also at the other NLL weight, so the NLL term's effect is read on the same seeds.
   Per method the mean over seeds with a 95% patient-bootstrap interval (one set of resamples
   for every model and seed), CPO minus each other method paired on the same draws.

Every model is an asset materialization (`sft_model`, `sft_continued_model`, `cpo_model`,
`dpo_random_model`, `cpo_no_cot_model`) and every score a `model_evaluation`: the same code
path as `dagster asset materialize`; runs are keyed by content, so a configuration trained in
selection is reused, not retrained, by the final run of seed 0.

    .venv/bin/python benchmarks/bench_cpo_synthetic.py [--quick] [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

# Also importable by path (cpo_pipeline_tests/training/test_bench_cpo_synthetic.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import (
    add_cohort_arguments,
    build_cohort,
    clean_environment,
    experiment_root,
    materialize_under,
    read_studies,
)

SFT_METHOD, CONTINUED, CPO = "sft_model", "sft_continued_model", "cpo_model"
PREFERENCE = ("cpo_model", "dpo_random_model", "cpo_no_cot_model")
LATER = (CONTINUED, *PREFERENCE)
METHODS = (SFT_METHOD, *LATER)
# The gate on the testbed itself (issue 28): below it, the comparison measures the testbed.
GATE_EXACT_OVER_FLOOR, GATE_MACRO_F1_FIVE = 0.15, 0.40
SELECTION_PARSE_RATE = 0.95
# Every training run's: no tracking, no in-training evaluation or samples (scored afterwards).
QUIET_TRAINING = {"report_to": "none", "eval_samples": 0, "sample_max_new_tokens": 0}
# Every evaluation's generation settings.
GENERATION = {"max_new_tokens": 128, "batch_size": 32}


@dataclass(frozen=True)
class Plan:
    """Sizes and the grid, declared before the run (benchmarks/README.md)."""

    patients: int
    sft_epochs: float
    sft_rates: tuple[float, ...]
    later_rates: tuple[float, ...]
    nll_weights: tuple[float, ...]
    # The per-study probes and held-out pairs scored per model: fewer while selecting (only the
    # answers decide), more in the final runs.
    selection_probes: int
    final_probes: int
    max_pairs: int
    # More run config for every training (a test's step caps, the GPU script's precision).
    sft: Mapping = field(default_factory=dict)
    later: Mapping = field(default_factory=dict)


# Full: 2,500 patients (about 3,500 SFT examples, 5,300 CPO pairs, 540 validate and 540 test
# studies). SFT 8 epochs, the tiny recipe's own: at 2 it stayed within 4 points of the floor on
# validate (exact 0.41 against 0.37, macro-F1 five 0.20), at 8 it passed the gate (0.53, 0.50).
FULL = Plan(patients=2500, sft_epochs=8.0, sft_rates=(5e-3, 1e-2), later_rates=(5e-5, 5e-4),
            nll_weights=(0.0, 1.0), selection_probes=40, final_probes=150, max_pairs=150)
# Quick: the plumbing and the figures' shape in CI time; at 300 patients the gate fails.
QUICK = Plan(patients=300, sft_epochs=2.0, sft_rates=(5e-3,), later_rates=(5e-5,),
             nll_weights=(0.0, 1.0), selection_probes=10, final_probes=20, max_pairs=20)


def grid(plan: Plan, method: str) -> list[dict]:
    """The configurations `method` is tried with: the same grid for every method of a kind."""
    if method == SFT_METHOD:
        return [{"learning_rate": rate} for rate in plan.sft_rates]
    if method == CONTINUED:  # all NLL: the weight does not apply
        return [{"learning_rate": rate} for rate in plan.later_rates]
    return [{"learning_rate": rate, "sft_loss_weight": weight}
            for rate in plan.later_rates for weight in plan.nll_weights]


def run_config(plan: Plan, method: str, config: Mapping, seed: int) -> dict:
    """`method`'s run config: `config` (a grid point, or {} for the recipe's defaults) at `seed`."""
    common = {"seed": seed, **QUIET_TRAINING}
    if method == SFT_METHOD:
        return {**common, "num_train_epochs": plan.sft_epochs, **plan.sft, **config}
    return {**common, **(plan.sft if method == CONTINUED else plan.later), **config}


def train(data_root: Path, plan: Plan, method: str, config: Mapping, seed: int) -> None:
    materialize_under(data_root, [method],
                      {"ops": {method: {"config": run_config(plan, method, config, seed)}}})


def evaluate(data_root: Path, plan: Plan, models: Sequence[str], split: str, *, probes: int,
             resamples: int, seed: int = 0) -> tuple[Path, dict]:
    """`model_evaluation` of `models` (their current runs) on `split`: its folder and metadata."""
    config = {"models": list(models), "split": split, "resamples": resamples, "seed": seed,
              "meteor": False, **GENERATION,
              "max_pairs": probes, "probe_studies": probes}
    result = materialize_under(data_root, ["model_evaluation"],
                               {"ops": {"model_evaluation": {"config": config}}})
    materialization = result.asset_materializations_for_node("model_evaluation")[0]
    metadata = {key: getattr(value, "value", value)
                for key, value in materialization.metadata.items()}
    return Path(metadata["report_path"]).parent, metadata


FIGURES = ("macro_f1_five", "macro_f1_all", "balanced_accuracy_five", "exact_answer",
           "parse_rate", "average_accuracy_five")


def figures_of(metadata: Mapping, name: str) -> dict[str, float]:
    """The primary figures the evaluation reported for `name` (a model, or 'floor')."""
    return {figure: float(metadata[f"{name}/{figure}"]) for figure in FIGURES}


def choose(candidates: Sequence[dict]) -> dict | None:
    """The selection rule: among candidates parsing >= 95% on validate, the highest macro-F1
    over the five, ties broken by exact answers then grid order; None when none parses enough."""
    admissible = [c for c in candidates if c["figures"]["parse_rate"] >= SELECTION_PARSE_RATE
                  and not np.isnan(c["figures"]["macro_f1_five"])]
    if not admissible:
        return None
    return max(admissible, key=lambda c: (c["figures"]["macro_f1_five"],
                                          c["figures"]["exact_answer"],
                                          -candidates.index(c)))


def gate(sft: Mapping[str, float], floor: Mapping[str, float]) -> list[str]:
    """Why the testbed cannot compare methods (empty: it can), from SFT's validate figures."""
    reasons = []
    if not sft["exact_answer"] >= floor["exact_answer"] + GATE_EXACT_OVER_FLOOR:
        reasons.append(f"SFT's exact answers {sft['exact_answer']:.3f} are not "
                       f"{GATE_EXACT_OVER_FLOOR:.2f} above the floor's {floor['exact_answer']:.3f}")
    if not sft["macro_f1_five"] >= GATE_MACRO_F1_FIVE:
        reasons.append(f"SFT's macro-F1 over the five {sft['macro_f1_five']:.3f} is below "
                       f"{GATE_MACRO_F1_FIVE:.2f}")
    return reasons


def _try(data_root: Path, plan: Plan, method: str, config: Mapping, resamples: int) -> dict:
    train(data_root, plan, method, config, seed=0)
    _, metadata = evaluate(data_root, plan, [method], "validate", probes=plan.selection_probes,
                           resamples=resamples)
    return {"config": dict(config), "figures": figures_of(metadata, method),
            "floor": figures_of(metadata, "floor")}


def _select(data_root: Path, plan: Plan, method: str, resamples: int) -> dict:
    """`method` over its grid on validate (seed 0): every candidate, the recipe default scored
    beside, and the choice."""
    candidates = [_try(data_root, plan, method, config, resamples)
                  for config in grid(plan, method)]
    default = _try(data_root, plan, method, {}, resamples)
    return {"candidates": candidates, "default": default, "chosen": choose(candidates)}


def select_sft(data_root: Path, plan: Plan, resamples: int) -> dict:
    """SFT over its grid on validate (seed 0), the choice, its default and the gate."""
    selection = _select(data_root, plan, SFT_METHOD, resamples)
    chosen = selection["chosen"]
    reasons = (["no SFT configuration parses >= 95% on validate"] if chosen is None
               else gate(chosen["figures"], chosen["floor"]))
    return {**selection, "gate": reasons}


def select_later(data_root: Path, plan: Plan, sft_config: Mapping, resamples: int,
                 methods: Sequence[str] = LATER) -> dict:
    """Each later method over its grid on validate, from the chosen SFT (seed 0). cpo_model
    goes first: continued SFT takes as many steps as it trained."""
    train(data_root, plan, SFT_METHOD, sft_config, seed=0)
    return {method: _select(data_root, plan, method, resamples)
            for method in sorted(methods, key=lambda m: m != CPO)}


def answers_of(folder: Path, studies: pd.DataFrame, column: str = "model"
               ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, np.ndarray]:
    """Per model (named in the generations' `column`), its parsed answers in study order; the
    references; the patients."""
    from cpo_pipeline.evaluation.classification import reference_answers
    from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

    generations = pd.read_parquet(folder / "generations.parquet")
    answers = {model: rows.sort_values("study_id").reset_index(drop=True)
               for model, rows in generations.groupby(column)}
    order = next(iter(answers.values()))
    labels = studies.set_index("study_id").loc[order["study_id"], list(CHEXPERT_LABELS)]
    return answers, reference_answers(labels.reset_index(drop=True)), order["subject_id"].to_numpy()


def final_runs(data_root: Path, plan: Plan, configs: Mapping[str, Mapping], seeds: Sequence[int],
               resamples: int, timings: dict) -> list[dict]:
    """Each seed: SFT and every later method at its selected configuration, all scored on
    test; then CPO at the other NLL weight(s), scored alone. Returns each seed's parsed answers
    per model (the NLL variants as 'cpo_model (NLL w)'), with the folders."""
    studies = read_studies(data_root)
    per_seed = []
    for seed in seeds:
        began = time.perf_counter()
        train(data_root, plan, SFT_METHOD, configs[SFT_METHOD], seed)
        answers, folders = {}, []
        cpo = configs[CPO]
        for weight in plan.nll_weights:
            if weight == cpo.get("sft_loss_weight"):
                continue
            train(data_root, plan, CPO, {**cpo, "sft_loss_weight": weight}, seed)
            folder, _ = evaluate(data_root, plan, [CPO], "test", probes=plan.final_probes,
                                 resamples=resamples)
            variant, reference, subjects = answers_of(folder, studies)
            answers[f"{CPO} (NLL {weight:g})"] = variant[CPO]
            folders.append(str(folder))
        for method in sorted(LATER, key=lambda m: m != CPO):
            train(data_root, plan, method, configs[method], seed)
        folder, _ = evaluate(data_root, plan, METHODS, "test", probes=plan.final_probes,
                             resamples=resamples)
        main, reference, subjects = answers_of(folder, studies)
        answers.update(main)
        folders.append(str(folder))
        per_seed.append({"seed": seed, "answers": answers, "reference": reference,
                         "subjects": subjects, "folders": folders})
        timings[f"seed_{seed}_s"] = time.perf_counter() - began
        print(f"seed {seed}: trained and scored in {timings[f'seed_{seed}_s']:.0f} s", flush=True)
    return per_seed


def aggregate(per_seed: Sequence[dict], resamples: int) -> dict:
    """Per model (and the floor): each figure as the mean over seeds with a 95% interval from
    one set of patient resamples shared by every model and seed; CPO minus each other model on
    the same draws (paired). The seed-to-seed standard deviation beside."""
    from cpo_pipeline.evaluation.classification import (
        ANSWER_METRICS,
        AVERAGE_FIVE,
        PAPER_FIVE,
        answer_metric_draws,
        correct_matrix,
        draws_table,
        no_finding_answers,
        with_resamples,
    )

    subjects = per_seed[0]["subjects"]
    weights = with_resamples(subjects, resamples, 0)
    five = [list(per_seed[0]["reference"].columns).index(label) for label in PAPER_FIVE]

    def draws(answers: pd.DataFrame, reference: pd.DataFrame) -> dict[str, np.ndarray]:
        figures = {k: v for k, v in answer_metric_draws(answers, reference, weights).items()
                   if k in ANSWER_METRICS}
        correct = correct_matrix(answers, reference)[:, five].mean(axis=1)
        figures[AVERAGE_FIVE] = weights @ correct / weights.sum(axis=1)
        return figures

    models = [m for m in per_seed[0]["answers"] if all(m in s["answers"] for s in per_seed)]
    by_model = {m: [draws(s["answers"][m], s["reference"]) for s in per_seed] for m in models}
    by_model["floor"] = [draws(no_finding_answers(len(subjects)), s["reference"])
                         for s in per_seed]

    def pooled(seed_draws: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.mean([d[k] for d in seed_draws], axis=0) for k in seed_draws[0]}

    def rows(table: pd.DataFrame, seed_draws: Sequence[dict]) -> dict[str, dict]:
        out = {}
        for record in table.to_dict(orient="records"):
            seeds = [float(d[record["label"]][0]) for d in seed_draws]
            out[record["label"]] = {**record, "seeds": seeds,
                                    "seed_sd": float(np.std(seeds, ddof=1)) if len(seeds) > 1
                                    else 0.0}
        return out

    summary = {m: rows(draws_table(pooled(d), len(subjects)), d) for m, d in by_model.items()}
    differences = {}
    for other in models:
        if other == CPO or CPO not in by_model:
            continue
        delta = [{k: a[k] - b[k] for k in a} for a, b in zip(by_model[CPO], by_model[other],
                                                              strict=True)]
        differences[f"{CPO} - {other}"] = rows(draws_table(pooled(delta), len(subjects)), delta)
    return {"figures": summary, "cpo_minus": differences}


def _cell(row: Mapping) -> str:
    if row["value"] is None:
        return "n/a"
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def print_selection(sft: Mapping, later: Mapping | None) -> None:
    print("\nselection on validate (seed 0): macro-F1 five / exact / parse rate; * chosen")
    floor = sft["candidates"][0]["floor"]
    print(f"  floor (all 'No Finding'): exact {floor['exact_answer']:.3f}, "
          f"macro-F1 five {floor['macro_f1_five']:.3f}")
    for method, selection in [(SFT_METHOD, sft), *((later or {}).items())]:
        for candidate in [*selection["candidates"], {**selection["default"], "default": True}]:
            f = candidate["figures"]
            mark = "*" if candidate is selection["chosen"] else " "
            name = "default " + json.dumps(candidate["config"]) if candidate.get("default") \
                else json.dumps(candidate["config"])
            print(f"{mark} {method:20s} {name:54s} {f['macro_f1_five']:.3f} / "
                  f"{f['exact_answer']:.3f} / {f['parse_rate']:.3f}")


def print_summary(summary: Mapping) -> None:
    from cpo_pipeline.evaluation.classification import (
        AVERAGE_FIVE,
        EXACT,
        MACRO_F1_ALL,
        MACRO_F1_FIVE,
        PARSE_RATE,
    )

    columns = (MACRO_F1_FIVE, MACRO_F1_ALL, EXACT, PARSE_RATE, AVERAGE_FIVE)
    print("\non test, selected configurations: mean over seeds [95% patient-bootstrap interval]")
    print(f"  {'model':24s} " + " | ".join(f"{c:26s}" for c in columns))
    for model, rows in summary["figures"].items():
        print(f"  {model:24s} " + " | ".join(f"{_cell(rows[c]):26s}" for c in columns))
    print("\nCPO minus each model, paired on the same studies and draws [95% interval]")
    for name, rows in summary["cpo_minus"].items():
        print(f"  {name:40s} " + ", ".join(f"{c} {_cell(rows[c])}" for c in (MACRO_F1_FIVE, EXACT)))


def run(data_root: Path, plan: Plan, seeds: Sequence[int], resamples: int,
        selection: Mapping | None = None, save=lambda result: None) -> dict:
    """The whole protocol; the final runs only when the gate holds. `selection`: a previous
    run's (its JSON's "selection"), whose choices are used instead of selecting again;
    `save`: called with the result so far after each phase."""
    timings: dict[str, float] = {}
    result: dict = {"plan": asdict(plan), "seeds": list(seeds),
                    "grid": {m: grid(plan, m) for m in METHODS}, "timings": timings}
    began = time.perf_counter()
    sft = selection[SFT_METHOD] if selection else select_sft(data_root, plan, resamples)
    timings["select_sft_s"] = time.perf_counter() - began
    result["selection"] = {SFT_METHOD: sft}
    save(result)
    if sft["gate"]:
        print_selection(sft, None)
        print("\nno method comparison: the testbed cannot show one, because "
              + "; ".join(sft["gate"]) + " (on validate, seed 0)")
        return result
    began = time.perf_counter()
    later = ({m: selection[m] for m in LATER} if selection
             else select_later(data_root, plan, sft["chosen"]["config"], resamples))
    timings["select_later_s"] = time.perf_counter() - began
    result["selection"].update(later)
    save(result)
    print_selection(sft, later)
    unparsed = [m for m, s in later.items() if s["chosen"] is None]
    if unparsed:
        print(f"\nno configuration of {', '.join(unparsed)} parses >= 95% on validate: they "
              "are left out of the final runs")
    configs = {SFT_METHOD: sft["chosen"]["config"],
               **{m: s["chosen"]["config"] for m, s in later.items() if s["chosen"] is not None}}
    if CPO not in configs:
        return result
    per_seed = final_runs(data_root, plan, configs, seeds, resamples, timings)
    summary = aggregate(per_seed, resamples)
    result.update(summary)
    result["final_folders"] = {s["seed"]: s["folders"] for s in per_seed}
    print_summary(summary)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced version (CI time)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--patients", type=int, help="cohort size (default: full 2500, "
                        "quick 300)")
    parser.add_argument("--selected", type=Path, help="a previous run's JSON: use its "
                        "selection (same plan and cohort) and go straight to the final runs")
    add_cohort_arguments(parser)
    args = parser.parse_args()
    clean_environment()
    plan = QUICK if args.quick else FULL
    if args.patients:
        plan = replace(plan, patients=args.patients)
    with experiment_root(args.data_root) as data_root:
        started = time.perf_counter()
        cohort = build_cohort(data_root, plan.patients, args.cohort_seed)
        cohort_s = time.perf_counter() - started
        print(f"cohort: {cohort} ({cohort_s:.0f} s)", flush=True)
        selection = None
        if args.selected:
            previous = json.loads(args.selected.read_text())
            if previous["plan"] != json.loads(json.dumps(asdict(plan))):
                raise SystemExit(f"{args.selected} was selected under another plan: "
                                 f"{previous['plan']}")
            selection = previous["selection"]

        def save(partial: dict) -> None:
            if args.json:
                args.json.write_text(json.dumps({**partial, "cohort": cohort}, indent=1,
                                                default=float))

        result = run(data_root, plan, args.seeds, args.resamples, selection, save)
    result["timings"]["cohort_s"] = cohort_s
    result["timings"]["total_s"] = time.perf_counter() - started
    result["cohort"] = cohort
    print(f"\nwall: {result['timings']['total_s']:.0f} s ({'quick' if args.quick else 'full'}; "
          f"target {'< 600' if args.quick else '<= 3600 per phase'} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
