"""The synthetic CPO experiment's protocol (benchmarks/bench_cpo_synthetic.py) at a test's size:
a 40-patient cohort, selection on validate over a small grid, final runs of two seeds on test,
through the same functions the benchmark's --quick and full runs call."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk

from cpo_pipeline.evaluation.classification import EXACT, MACRO_F1_FIVE, correct_matrix
from cpo_pipeline.training import run_dirs

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cpo_synthetic.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cpo_synthetic", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    data_root = tmp_path_factory.mktemp("synthetic")
    plan = replace(bench.QUICK, patients=40, sft_epochs=1.0, selection_probes=4, final_probes=4,
                   max_pairs=4, later={"max_steps": 4})
    bench.build_cohort(data_root, patients=40, cohort_seed=3)
    sft = bench.select_sft(data_root, plan, resamples=50)
    sft_config = (sft["chosen"] or sft["candidates"][0])["config"]
    later = bench.select_later(data_root, plan, sft_config, resamples=50)
    configs = {bench.SFT_METHOD: sft_config,
               **{m: (s["chosen"] or s["candidates"][0])["config"] for m, s in later.items()}}
    per_seed = bench.final_runs(data_root, plan, configs, (0, 1), 50, {})
    return data_root, plan, sft, later, configs, per_seed, bench.aggregate(per_seed, 50)


def _candidate(f1, exact, parse):
    return {"config": {}, "figures": {"macro_f1_five": f1, "exact_answer": exact,
                                      "parse_rate": parse}}


def test_the_rule_picks_the_best_macro_f1_among_configurations_that_parse():
    broken, good, better, tied = (_candidate(0.9, 0.9, 0.90), _candidate(0.5, 0.5, 0.99),
                                  _candidate(0.6, 0.4, 0.96), _candidate(0.6, 0.45, 0.97))

    assert bench.choose([broken, good]) is good  # the best F1 parses 90%: not admissible
    assert bench.choose([good, better, tied]) is tied  # equal F1: more exact answers
    assert bench.choose([broken]) is None


def test_the_gate_names_each_figure_that_falls_short():
    floor = {"exact_answer": 0.37}

    assert bench.gate({"exact_answer": 0.53, "macro_f1_five": 0.50}, floor) == []
    reasons = bench.gate({"exact_answer": 0.45, "macro_f1_five": 0.20}, floor)
    assert len(reasons) == 2
    assert "0.450 are not 0.15 above the floor's 0.370" in reasons[0]
    assert "0.200 is below 0.40" in reasons[1]


def test_every_method_is_tried_on_its_grid_and_scored_on_validate(experiment):
    data_root, plan, sft, later, _, _, _ = experiment
    validate = load_from_disk(str(data_root / "datasets" / "sft_dataset" / "validate"))
    floor = np.mean([row["messages"][-1]["content"].endswith("No Finding.") for row in validate])

    assert [c["config"] for c in sft["candidates"]] == bench.grid(plan, bench.SFT_METHOD)
    assert set(later) == set(bench.LATER)
    for method, selection in later.items():
        assert [c["config"] for c in selection["candidates"]] == bench.grid(plan, method)
        for candidate in selection["candidates"]:
            assert 0.0 <= candidate["figures"]["parse_rate"] <= 1.0
    # The floor each was read against is the validate split's: its share of "No Finding".
    assert sft["candidates"][0]["floor"]["exact_answer"] == pytest.approx(floor)
    assert bench.grid(plan, "cpo_model") == [{"learning_rate": 5e-5, "sft_loss_weight": 0.0},
                                             {"learning_rate": 5e-5, "sft_loss_weight": 1.0}]


def test_each_seed_retrains_sft_and_scores_every_method_and_the_other_nll_weight_on_test(
        experiment):
    data_root, _, _, _, configs, per_seed, _ = experiment
    test = load_from_disk(str(data_root / "datasets" / "sft_dataset" / "test"))
    other = 1.0 - configs["cpo_model"]["sft_loss_weight"]

    assert [s["seed"] for s in per_seed] == [0, 1]
    for seed in per_seed:
        assert set(seed["answers"]) == {*bench.METHODS, f"cpo_model (NLL {other:g})"}
        for answers in seed["answers"].values():
            assert sorted(answers["study_id"]) == sorted(test["study_id"])
    assert per_seed[0]["folders"][-1] != per_seed[1]["folders"][-1]
    run = run_dirs.read_current(data_root, "sft_model")[0]
    assert json.loads((run / "run_config.json").read_text())["seed"] == 1  # its own SFT


def test_the_summary_is_the_mean_over_seeds_and_cpo_is_compared_paired(experiment):
    _, _, _, _, _, per_seed, summary = experiment
    figures = summary["figures"]

    for rows in figures.values():
        row = rows[EXACT]
        assert row["value"] == pytest.approx(np.mean(row["seeds"]))
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    exact = [correct_matrix(s["answers"]["sft_model"], s["reference"]).all(axis=1).mean()
             for s in per_seed]
    assert figures["sft_model"][EXACT]["seeds"] == pytest.approx(exact)
    floor = per_seed[0]["reference"]["No Finding"].to_numpy() & ~per_seed[0]["reference"].drop(
        columns="No Finding").to_numpy().any(axis=1)
    assert figures["floor"][EXACT]["value"] == pytest.approx(floor.mean())
    assert set(summary["cpo_minus"]) == {f"cpo_model - {m}" for m in figures
                                         if m not in ("cpo_model", "floor")}
    for name, rows in summary["cpo_minus"].items():
        other = name.split(" - ")[1]
        difference = figures["cpo_model"][EXACT]["value"] - figures[other][EXACT]["value"]
        assert rows[EXACT]["value"] == pytest.approx(difference)
        if rows[MACRO_F1_FIVE]["value"] is not None:
            assert rows[MACRO_F1_FIVE]["ci_low"] <= rows[MACRO_F1_FIVE]["value"]


def test_the_answers_read_back_are_the_evaluations_own(experiment):
    _, _, _, _, _, per_seed, _ = experiment
    folder = Path(per_seed[1]["folders"][-1])
    generations = pd.read_parquet(folder / "generations.parquet")
    sft = generations[generations["model"] == "sft_model"].sort_values("study_id")

    assert per_seed[1]["answers"]["sft_model"]["text"].tolist() == sft["text"].tolist()
