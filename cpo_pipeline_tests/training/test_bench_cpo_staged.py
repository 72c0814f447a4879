"""The staged experiment's protocol (benchmarks/bench_cpo_staged.py) at a test's size: a
40-patient drifting cohort, the gate read from the stage-0 SFT model on validate, two seeds of
final runs on test with configurations taken from an unstaged selection."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk

from cpo_pipeline import data_layout
from cpo_pipeline.evaluation.classification import EXACT, correct_matrix
from cpo_pipeline.evaluation.staged import INITIAL
from cpo_pipeline.training import run_dirs

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load("bench_cpo_staged")
# What an unstaged run selected, as its JSON's "selection" holds it.
SELECTION = {
    "sft_model": {"gate": [], "chosen": {"config": {"learning_rate": 5e-3}}},
    "sft_continued_model": {"chosen": {"config": {"learning_rate": 2e-4}}},
    "cpo_model": {"chosen": {"config": {"learning_rate": 1e-4, "sft_loss_weight": 0.0}}},
    "dpo_random_model": {"chosen": {"config": {"learning_rate": 5e-5, "sft_loss_weight": 1.0}}},
    "cpo_no_cot_model": {"chosen": {"config": {"learning_rate": 5e-5, "sft_loss_weight": 1.0}}},
}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    data_root = tmp_path_factory.mktemp("staged_bench")
    plan = replace(bench.QUICK, patients=40, probes=4, max_pairs=4,
                   sft={"max_steps": 6, "tiny_vision_pretraining_epochs": 1},
                   later={"max_steps": 2})
    bench.build_cohort(data_root, 40, 3, plan.drift)
    configs = bench.selected_configs(SELECTION)
    folder, _, manifest = bench.staged(data_root, plan, configs, 0, split="validate", methods=[],
                                       resamples=50)
    gate = bench.staged_gate(folder, manifest, bench.read_studies(data_root), 50)
    per_seed, matrices = bench.final_runs(data_root, plan, configs, (0, 1), 50, {})
    return data_root, plan, folder, gate, per_seed, matrices


def test_each_method_takes_the_configuration_the_unstaged_protocol_selected():
    configs = bench.selected_configs(SELECTION)
    assert configs["cpo_model"] == {"learning_rate": 1e-4, "sft_loss_weight": 0.0}
    assert bench.selected_configs(None) == {method: {} for method in bench.METHODS}
    failed = {**SELECTION, "sft_model": {**SELECTION["sft_model"], "gate": ["too low"]}}
    with pytest.raises(SystemExit, match="did not pass its gate \\(too low\\)"):
        bench.selected_configs(failed)
    unchosen = {**SELECTION, "cpo_model": {"chosen": None}}
    with pytest.raises(SystemExit, match="no configuration for \\['cpo_model'\\]"):
        bench.selected_configs(unchosen)

    config = bench.run_config(bench.FULL, configs, 2, split="test", methods=bench.FULL.methods,
                              final_only=True, resamples=10)["ops"]
    models = config["staged_models"]["config"]
    assert models["cpo"]["learning_rate"] == 1e-4 and models["cpo"]["seed"] == 2
    assert models["continued_sft"]["learning_rate"] == 2e-4
    assert "max_steps" not in models["continued_sft"]  # -1: CPO's steps, stage by stage
    assert models["sft"]["num_train_epochs"] == bench.FULL.sft_epochs
    assert config["staged_evaluation"]["config"]["final_only"] is True


def test_the_gate_reads_the_stage_0_sft_model_on_validate(experiment):
    data_root, _, folder, (sft, floor, reasons), _, _ = experiment
    validate = load_from_disk(str(data_layout.dataset(data_root, "sft_dataset") / "validate"))
    answers = [row["messages"][-1]["content"] for row in validate]
    assert floor["exact_answer"] == pytest.approx(np.mean(
        [answer.endswith("No Finding.") for answer in answers]))
    generations = json.loads((folder / "staged.json").read_text())
    assert generations["methods"] == {}  # the stage-0 SFT model alone was scored
    assert sum(generations["test_studies"].values()) == len(validate)
    assert reasons == bench.gate(sft, floor)
    # 6 steps of SFT on 40 patients cannot read the images: the gate says so.
    assert reasons


def test_each_seed_retrains_every_stage_at_the_selected_configurations(experiment):
    data_root, _, _, _, per_seed, matrices = experiment
    assert [s["seed"] for s in per_seed] == [0, 1]
    for seed in per_seed:
        assert list(seed["answers"]) == [bench.STAGE_ZERO, "sft_continued_model", "cpo_model"]
    # Seed 1's models were trained at seed 1: other runs than seed 0's.
    manifest = json.loads((data_layout.staged_datasets(data_root) / "models.json").read_text())
    for entries in manifest["runs"].values():
        for entry in entries:
            config = json.loads((data_root / entry["run_dir"] / run_dirs.RUN_CONFIG).read_text())
            assert config["seed"] == 1
    # The test caps every later run at 2 steps, so continued SFT is not step-matched here
    # (test_staged.py covers that): its stage 0 is the stage-0 SFT model itself.
    continued = manifest["runs"]["sft"]
    assert continued[0]["data_version"] == manifest["runs"][INITIAL][0]["data_version"]
    for method, rate in (("sft", 2e-4), ("cpo", 1e-4)):
        for entry in manifest["runs"][method][1 if method == "sft" else 0:]:
            assert entry["global_step"] == 2
            config = json.loads((data_root / entry["run_dir"] / run_dirs.RUN_CONFIG).read_text())
            assert config["learning_rate"] == rate
    # Seed 0 scored every stage's model, the matrices' rows; seed 1 the final models only.
    assert set(matrices["methods"]["cpo"]["macro_f1_five_matrix"]) == {"0", "1", "2"}


def test_the_paired_difference_is_the_mean_over_seeds_of_each_seeds_difference(experiment):
    _, _, _, _, per_seed, _ = experiment
    summary = bench.aggregate(per_seed, 50)

    def exact(answers, reference):
        return correct_matrix(answers, reference).all(axis=1).mean()

    expected = np.mean([exact(s["answers"]["cpo_model"], s["reference"])
                        - exact(s["answers"][bench.STAGE_ZERO], s["reference"])
                        for s in per_seed])
    difference = summary["cpo_minus"][f"cpo_model - {bench.STAGE_ZERO}"][EXACT]
    assert difference["value"] == pytest.approx(expected)
    assert difference["ci_low"] <= difference["value"] <= difference["ci_high"]
