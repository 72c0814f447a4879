"""The synthetic CPO experiment (benchmarks/bench_cpo_synthetic.py) at a test's size: a small
cohort, two seeds, through the same functions the benchmark's --quick and full runs call."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpo_pipeline.evaluation.classification import AVERAGE_FIVE

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cpo_synthetic.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cpo_synthetic", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    bench = _bench()
    data_root = tmp_path_factory.mktemp("synthetic")
    cohort = bench.build_cohort(data_root, patients=40, cohort_seed=3)
    studies = pd.read_parquet(data_root / "tables" / "cxr_studies.parquet")
    folders = [bench.train_and_evaluate(data_root, seed, sft_epochs=2.0, resamples=200)
               for seed in (0, 1)]
    per_seed = [bench.correct_answers(folder, studies) for folder in folders]
    figures = [json.loads((folder / "figures.json").read_text()) for folder in folders]
    return bench, cohort, folders, per_seed, bench.aggregate(per_seed, figures, 200)


def test_each_seed_trains_its_own_four_models_and_evaluates_them(experiment):
    _, cohort, folders, per_seed, _ = experiment

    assert cohort["studies"] > 40 and cohort["split"]["test"] > 0
    assert folders[0] != folders[1]  # the seed is in every model's run key, so in the report's
    for correct in per_seed:
        assert set(correct) == {"sft_model", "cpo_model", "dpo_random_model", "cpo_no_cot_model"}
        assert len({len(table) for table in correct.values()}) == 1


def test_the_summary_is_the_mean_over_seeds_with_an_interval_around_it(experiment):
    bench, _, _, per_seed, summary = experiment

    for method, rows in summary["accuracy"].items():
        seeds = [bench._columns(seed[method])[AVERAGE_FIVE].mean() for seed in per_seed]
        row = rows[AVERAGE_FIVE]
        assert row["accuracy"] == pytest.approx(np.mean(seeds))
        assert row["seeds"] == pytest.approx(seeds)
        assert row["seed_sd"] == pytest.approx(np.std(seeds, ddof=1))
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]


def test_cpo_is_compared_paired_with_each_other_method(experiment):
    _, _, _, _, summary = experiment
    accuracy = summary["accuracy"]

    assert set(summary["cpo_minus"]) == {"cpo_model - sft_model", "cpo_model - dpo_random_model",
                                         "cpo_model - cpo_no_cot_model"}
    for name, rows in summary["cpo_minus"].items():
        other = name.split(" - ")[1]
        row = rows[AVERAGE_FIVE]
        assert row["difference"] == pytest.approx(
            accuracy["cpo_model"][AVERAGE_FIVE]["accuracy"] - accuracy[other][AVERAGE_FIVE]["accuracy"])
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]


def test_aucs_and_probes_are_averaged_over_the_seeds(experiment):
    _, _, _, _, summary = experiment

    for method in summary["accuracy"]:
        assert all(0.0 <= value <= 1.0 for value in summary["auc"][method].values()
                   if not np.isnan(value))
        assert "flip rate after a synonym swap" in summary["probes"][method]
