"""The four model assets on the demo chain, each trained in its own process through Dagster Pipes:
what they report, what they write, what reloads, what is reused, and how a bad config fails."""

import json
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
import torch
import yaml
from datasets import load_from_disk
from transformers import AutoModelForImageTextToText, AutoProcessor

from cpo_pipeline.definitions import defs
from cpo_pipeline.preference.card import DATA_USE_NOTICE
from cpo_pipeline.radiology.answer_format import parse_trajectory
from cpo_pipeline.resources.rooted import rooted_resources
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.train import prompt_inputs
from cpo_pipeline_tests.pipeline import ASSETS

MODELS = ("sft_model", "cpo_model", "dpo_random_model", "cpo_no_cot_model",
          "sft_continued_model")
DPO_MODELS = ("cpo_model", "dpo_random_model", "cpo_no_cot_model")
SFT_MODELS = ("sft_model", "sft_continued_model")
# The baseline and the ablation only need to show they are wired: a few steps each.
SHORT = {"max_steps": 4, "eval_samples": 16}


def materialize(data_root, selection, run_config=None, raise_on_error=True, **settings):
    return dg.materialize(
        [defs.get_assets_def(name) for name in (*ASSETS, *MODELS, "model_evaluation")],
        resources={**rooted_resources(data_root, **settings),
                   "pipes_subprocess_client": dg.PipesSubprocessClient()},
        selection=list(selection), run_config=run_config, raise_on_error=raise_on_error)


def _config(**per_asset) -> dict:
    return {"ops": {name: {"config": values} for name, values in per_asset.items()}}


def _materializations(result) -> dict:
    return {m.asset_key.to_user_string(): m.materialization
            for m in result.get_asset_materialization_events()}


def _value(materialization, key):
    return materialization.metadata[key].value


@pytest.fixture(scope="module")
def trained(demo_run, tmp_path_factory):
    data_root = demo_run.copy_to(tmp_path_factory.mktemp("models") / "data")
    result = materialize(data_root, MODELS, _config(dpo_random_model=SHORT,
                                                    cpo_no_cot_model=SHORT))
    return data_root, result


def test_the_four_models_materialize_through_pipes_with_a_content_version(trained):
    data_root, result = trained
    materialized = _materializations(result)

    assert result.success and set(materialized) == set(MODELS)
    for name, materialization in materialized.items():
        checkpoint = data_root / "models" / name
        model_dir = _value(materialization, "checkpoint_dir")
        assert model_dir.startswith(str(checkpoint)) and model_dir.endswith("/model")
        version = materialization.tags["dagster/data_version"]
        assert version == run_dirs.model_version(run_dirs.model_dir(run_dirs.read_current(
            data_root, name)[0]))
        assert _value(materialization, "skipped_unchanged") is False
        assert _value(materialization, "global_step") > 0
        assert _value(materialization, "world_size") == 1
        assert "training_curves" in materialization.metadata
        assert _value(materialization, "stage") == ("sft" if name in SFT_MODELS else "dpo")


def test_the_dpo_models_start_from_and_refer_to_the_sft_model(trained):
    _, result = trained
    materialized = _materializations(result)
    sft_dir = _value(materialized["sft_model"], "checkpoint_dir")

    for name in DPO_MODELS:
        assert _value(materialized[name], "reference_model") == sft_dir
        assert _value(materialized[name], "base_model") == "tiny-offline"


def test_continued_sft_starts_from_sft_model_for_as_many_steps_as_cpo_trained(trained):
    _, result = trained
    materialized = _materializations(result)
    continued = materialized["sft_continued_model"]

    assert _value(continued, "starting_model") == _value(materialized["sft_model"],
                                                         "checkpoint_dir")
    assert _value(continued, "global_step") == _value(materialized["cpo_model"], "global_step")
    assert _value(continued, "global_step") != _value(materialized["sft_model"], "global_step")


def test_cpo_reward_accuracy_on_its_training_pairs_ends_above_chance(trained):
    _, result = trained
    cpo = _materializations(result)["cpo_model"]

    assert _value(cpo, "reward_accuracy") > 0.6
    assert _value(cpo, "reward_margin") > 0
    assert 0 <= _value(cpo, "eval_reward_accuracy") <= 1
    recipe = _value(cpo, "recipe")
    assert (recipe["beta"], recipe["lora_r"], recipe["lora_alpha"]) == (0.1, 8, 32)


@pytest.mark.parametrize("name", MODELS)
def test_each_checkpoint_reloads_and_answers_in_the_trajectory_format(trained, name):
    data_root, _ = trained
    model_dir = run_dirs.model_dir(run_dirs.read_current(data_root, name)[0])
    example = load_from_disk(str(data_root / "datasets" / "sft_dataset" / "validate"))[0]
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    inputs = prompt_inputs(processor, example)

    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=96, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    assert parse_trajectory(answer).findings


def test_the_model_card_names_base_data_recipe_and_the_data_use_notice(trained):
    data_root, result = trained
    card = _value(_materializations(result)["cpo_model"], "model_card")
    run = run_dirs.read_current(data_root, "cpo_model")[0]

    assert card == (run_dirs.model_dir(run) / run_dirs.CARD).read_text()
    assert card.startswith("---\nbase_model: \"tiny-offline\"\n")
    assert 'pipeline_tag: "image-text-to-text"' in card
    assert "`preference_pairs`" in card and "| beta | 0.1 |" in card
    assert "reward_accuracy" in card and DATA_USE_NOTICE in card


def test_mlflow_holds_the_runs_parameters_metrics_and_checkpoint(trained):
    data_root, result = trained
    cpo = _materializations(result)["cpo_model"]
    run_id = _value(cpo, "mlflow_run_id")
    store = data_root / "mlflow" / "mlflow.db"

    assert _value(cpo, "mlflow_tracking_uri") == f"sqlite:///{store}"
    with sqlite3.connect(store) as db:
        params = dict(db.execute("select key, value from params where run_uuid = ?", (run_id,)))
        tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run_id,)))
        losses = db.execute("select count(*) from metrics where run_uuid = ? and key = 'loss'",
                            (run_id,)).fetchone()[0]
        final = dict(db.execute("select key, value from latest_metrics where run_uuid = ?",
                                (run_id,)))
    assert float(params["learning_rate"]) == _value(cpo, "recipe")["learning_rate"]
    assert params["beta"] == "0.1"
    history = run_dirs.read_log_history(Path(_value(cpo, "checkpoint_dir")))
    assert losses == len([row for row in history if "loss" in row]) > 0
    assert tags["checkpoint_dir"] == _value(cpo, "checkpoint_dir")
    assert final["final_train_rewards_accuracies"] == pytest.approx(_value(cpo,
                                                                          "reward_accuracy"))


def test_an_unchanged_rematerialization_is_skipped_with_the_same_data_version(trained):
    data_root, first = trained
    before = _materializations(first)
    def weights(materialization) -> Path:
        return Path(_value(materialization, "checkpoint_dir")) / "model.safetensors"

    written = {name: weights(m).stat().st_mtime_ns for name, m in before.items()}

    again = _materializations(materialize(data_root, MODELS, _config(
        dpo_random_model=SHORT, cpo_no_cot_model=SHORT)))

    for name in MODELS:
        assert _value(again[name], "skipped_unchanged") is True
        assert (again[name].tags["dagster/data_version"]
                == before[name].tags["dagster/data_version"])
        assert weights(again[name]).stat().st_mtime_ns == written[name]
        figure = "train_loss" if name in SFT_MODELS else "reward_accuracy"
        assert _value(again[name], figure) == _value(before[name], figure)


def test_force_trains_again_and_a_changed_config_is_a_new_run(trained):
    data_root, _ = trained
    run, old_version = run_dirs.read_current(data_root, "cpo_no_cot_model")
    old = json.loads((run / run_dirs.RUN_CONFIG).read_text())

    forced = _materializations(materialize(data_root, ["cpo_no_cot_model"], _config(
        cpo_no_cot_model={**SHORT, "force": True})))["cpo_no_cot_model"]
    changed = _materializations(materialize(data_root, ["cpo_no_cot_model"], _config(
        cpo_no_cot_model={**SHORT, "max_steps": 2})))["cpo_no_cot_model"]

    assert _value(forced, "skipped_unchanged") is False
    assert _value(forced, "checkpoint_dir") == old["output_dir"] + "/model"
    # Same inputs, same seed: the retrained weights are the same bytes, so the same version.
    assert forced.tags["dagster/data_version"] == old_version
    assert _value(changed, "skipped_unchanged") is False
    assert _value(changed, "global_step") == 2
    assert not _value(changed, "checkpoint_dir").startswith(old["output_dir"])


def test_a_bad_policy_model_fails_the_asset_with_the_reason_and_registers_nothing(
    demo_run, tmp_path
):
    data_root = demo_run.copy_to(tmp_path / "data")

    result = materialize(data_root, ["sft_model"], raise_on_error=False,
                         policy_model=str(tmp_path / "no-such-model"))

    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.event_specific_data.user_failure_data.description
    assert description.startswith("model '") and description.endswith(
        "no-such-model' does not exist (no such directory)")
    assert _materializations(result) == {}
    assert run_dirs.read_current(data_root, "sft_model") is None


def test_a_dpo_model_before_any_sft_model_says_so(demo_run, tmp_path):
    data_root = demo_run.copy_to(tmp_path / "data")

    with pytest.raises(dg.Failure, match="sft_model has not been materialized"):
        materialize(data_root, ["cpo_model"])


def test_the_training_assets_share_one_gpu_pool():
    assert {defs.get_assets_def(name).op.pool for name in MODELS} == {"gpu"}


def test_the_qwen2_5_vl_7b_recipe_is_valid_run_config_with_the_papers_settings():
    recipe = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "recipes"
                             / "qwen2_5_vl_7b.yaml").read_text())
    job = defs.resolve_implicit_global_asset_job_def()

    assert dg.validate_run_config(job, recipe)
    cpo = recipe["ops"]["cpo_model"]["config"]
    assert cpo["max_pixels"] == 1280 * 28 * 28 and cpo["beta"] == 0.1
    assert cpo["per_device_train_batch_size"] * cpo["gradient_accumulation_steps"] * cpo[
        "num_processes"] == 64
    assert set(recipe["ops"]) == set(MODELS)


def test_the_evaluation_report_puts_every_model_side_by_side_and_is_reused(trained):
    data_root, _ = trained
    config = {"ops": {"model_evaluation": {"config": {"resamples": 100, "max_new_tokens": 96,
                                                      "meteor": False, "include_base": True}}}}

    def evaluate():
        return dg.materialize(
            [defs.get_assets_def(name) for name in (*ASSETS, *MODELS, "model_evaluation")],
            resources={**rooted_resources(data_root),
                       "pipes_subprocess_client": dg.PipesSubprocessClient()},
            selection=["model_evaluation"], run_config=config)

    first = evaluate()
    [materialization] = [m.materialization for m in first.get_asset_materialization_events()]
    [check] = first.get_asset_check_evaluations()
    report = materialization.metadata["report"].value

    assert first.success and check.passed and check.check_name == "evaluation_sees_no_training_data"
    for name in ("base_model", *MODELS):
        assert f"| {name} (ours) |" in report
        assert 0.0 <= _value(materialization, f"{name}/average_accuracy_five") <= 1.0
        assert _value(materialization, f"{name}/generation_tokens_per_s") > 0
    # The swap probe edits the radiologists' findings: every model meets the same swaps.
    probes = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
              for line in report.splitlines()
              if line.startswith(("| synonym swaps", "| flip rate"))}
    assert int(probes["synonym swaps"][0]) > 0
    assert all(cell.strip(" |") != "n/a" for cell in probes["flip rate after a synonym swap"])
    assert "| cpo_model (paper, real data) | 77.7 |" in report
    for section in ("## Per-label ROC AUC", "## Clinical efficacy", "## Findings text",
                    "## Preference and drift probes"):
        assert section in report
    assert "reward accuracy" in report and "flip rate after a synonym swap" in report
    generations = Path(_value(materialization, "generations"))
    assert generations.is_file()
    second = evaluate()
    [again] = [m.materialization for m in second.get_asset_materialization_events()]
    assert _value(again, "reused") is True
    assert again.tags["dagster/data_version"] == materialization.tags["dagster/data_version"]


def test_the_evaluation_scales_each_models_rewards_by_the_beta_it_was_trained_with(
        trained, tmp_path):
    import shutil

    import pandas as pd

    data_root = Path(shutil.copytree(trained[0], tmp_path / "data"))
    materialize(data_root, ["cpo_model"], _config(cpo_model={**SHORT, "beta": 0.3}))
    result = materialize(data_root, ["model_evaluation"], _config(model_evaluation={
        "models": ["sft_model", "cpo_model"], "max_pairs": 6, "resamples": 20,
        "max_new_tokens": 24, "meteor": False}))
    [materialization] = [m.materialization for m in result.get_asset_materialization_events()]
    folder = Path(_value(materialization, "report_path")).parent
    pairs = pd.read_parquet(folder / "pairs.parquet").set_index(["model", "pair_id"])
    figures = json.loads((folder / "figures.json").read_text())
    cpo, sft = pairs.loc["cpo_model"], pairs.loc["sft_model"]

    assert figures["cpo_model"]["objective"] == {"beta": 0.3, "loss_type": ["sigmoid", "sft"],
                                                 "loss_weights": [1.0, 1.0]}
    assert _value(materialization, "cpo_model/reward_beta") == 0.3
    assert _value(materialization, "sft_model/reward_beta") == 0.1
    # The reference of cpo_model's rewards is sft_model: its log-probabilities are sft's own.
    assert cpo["ref_logp_chosen"].to_numpy() == pytest.approx(
        sft.loc[cpo.index, "logp_chosen"].to_numpy(), abs=1e-4)
    by_hand = 0.3 * ((cpo["logp_chosen"] - cpo["ref_logp_chosen"])
                     - (cpo["logp_rejected"] - cpo["ref_logp_rejected"]))
    assert cpo["reward_margin"].to_numpy() == pytest.approx(by_hand.to_numpy())
    assert figures["cpo_model"]["probes"]["mean reward margin"] == pytest.approx(by_hand.mean())
    assert (by_hand != 0).all()


def test_an_evaluation_on_validate_scores_the_validate_studies_and_pairs_only(trained):
    import pandas as pd

    data_root, _ = trained
    result = materialize(data_root, ["model_evaluation"], _config(model_evaluation={
        "models": ["sft_model"], "split": "validate", "resamples": 20,
        "max_new_tokens": 24, "meteor": False}))
    [materialization] = [m.materialization for m in result.get_asset_materialization_events()]
    folder = Path(_value(materialization, "report_path")).parent
    sets = data_root / "datasets"
    validate = load_from_disk(str(sets / "sft_dataset" / "validate"))
    pairs = {split: set(load_from_disk(str(sets / "preference_pairs" / split))["pair_id"])
             for split in ("validate", "test")}

    assert sorted(pd.read_parquet(folder / "generations.parquet")["study_id"]) == sorted(
        validate["study_id"])
    scored = set(pd.read_parquet(folder / "pairs.parquet")["pair_id"])
    assert scored == pairs["validate"] and not scored & pairs["test"]
    assert "Scored on the validate split, not test" in _value(materialization, "report")


def test_a_corpus_pretrained_tower_is_kept_under_the_data_root_and_shared_by_seeds(
        demo_run, tmp_path):
    from safetensors.torch import load_file

    data_root = demo_run.copy_to(tmp_path / "data")
    corpus = {"tiny_vision_corpus_images": 48, "tiny_vision_pretraining_epochs": 1,
              **SHORT}
    for seed in (0, 1):
        materialize(data_root, ["sft_model"], _config(sft_model={**corpus, "seed": seed}))
    kept = list((data_root / "models" / "vision_tower").glob("*/tower.safetensors"))
    assert len(kept) == 1
    tower = load_file(kept[0])
    runs = [path.parent for path in (data_root / "models" / "sft_model").glob(
        "*/" + run_dirs.RUN_CONFIG)]
    assert len(runs) == 2
    for run in runs:
        config = json.loads((run / run_dirs.RUN_CONFIG).read_text())
        assert config["tiny_vision_cache_dir"] == str(data_root / "models" / "vision_tower")
        base = AutoModelForImageTextToText.from_pretrained(run / "base_model")
        state = base.model.vision_tower.state_dict()
        assert all(torch.equal(state[name], tower[name]) for name in tower)
