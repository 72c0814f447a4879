"""The training config: the paper's defaults, the tiny model's recipe, the JSON the assets hand to
the entry point, the run key that decides reuse, and the launch command."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cpo_pipeline.training.config import DPO, SFT, TINY, TrainingConfig, recipe_parameters
from cpo_pipeline.training.launch import launch_command, model_identity, run_key

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@pytest.fixture
def dataset(tmp_path):
    split = tmp_path / "datasets" / "train"
    split.mkdir(parents=True)
    (split / "data-00000-of-00001.arrow").write_bytes(b"rows")
    (split / "state.json").write_text("{}")
    return split


def test_unset_fields_take_the_papers_recipe_per_stage():
    sft = TrainingConfig(stage=SFT).resolved()
    dpo = TrainingConfig(stage=DPO).resolved()

    assert (sft.learning_rate, dpo.learning_rate) == (1e-4, 2e-5)
    assert (sft.num_train_epochs, dpo.num_train_epochs) == (1.0, 1.0)
    assert dpo.warmup_ratio == 0.0 and 0 < sft.warmup_ratio < 0.2
    for config in (sft, dpo):
        assert (config.lora_r, config.lora_alpha, config.lora_target_modules) == (8, 32,
                                                                                  "all-linear")
        assert (config.adam_beta1, config.adam_beta2, config.weight_decay) == (0.9, 0.98, 0.05)
        assert config.lr_scheduler_type == "cosine"
        assert config.lora_modules_to_save == ""
        assert config.freeze_vision_tower and not config.trust_remote_code
    # The authors' preference loss: sigmoid DPO plus the NLL term on chosen at weight 1.
    assert dpo.beta == 0.1 and dpo.trl_losses() == (["sigmoid", "sft"], [1.0, 1.0])


@pytest.mark.parametrize("recipe", ["paper", TINY])
def test_plain_dpo_cpo_plus_plus_and_other_trl_losses_are_reachable(recipe):
    def losses(**values):
        return TrainingConfig(stage=DPO, recipe=recipe, **values).resolved().trl_losses()

    assert losses() == (["sigmoid", "sft"], [1.0, 1.0])
    assert losses(sft_loss_weight=0.0) == (["sigmoid"], [1.0])
    assert losses(sft_loss_weight=0.1) == (["sigmoid", "sft"], [1.0, 0.1])
    assert losses(loss_type="ipo", sft_loss_weight=0.0) == (["ipo"], [1.0])
    assert losses(loss_type="sigmoid, apo_zero") == (["sigmoid", "apo_zero", "sft"],
                                                     [1.0, 1.0, 1.0])


@pytest.mark.parametrize(("loss_type", "message"), [
    ("sft", "the NLL term on chosen is sft_loss_weight's"),
    ("sigmoid,sft", "the NLL term on chosen is sft_loss_weight's"),
    ("dpo", "loss_type 'dpo': expected one or more of sigmoid, hinge, ipo"),
    (" , ", "expected one or more of"),
])
def test_a_loss_trl_does_not_know_is_refused_before_training(loss_type, message):
    errors = TrainingConfig(stage=DPO, loss_type=loss_type).basic_errors()

    assert any(message in error for error in errors), errors


def test_the_tiny_recipe_trains_the_output_layer_and_explicit_values_win():
    tiny = TrainingConfig(stage=SFT, recipe=TINY).resolved()
    explicit = TrainingConfig(stage=SFT, recipe=TINY, learning_rate=3e-4).resolved()

    assert tiny.lora_modules_to_save == "lm_head"
    assert tiny.learning_rate > 1e-4 and tiny.num_train_epochs > 1
    assert explicit.learning_rate == 3e-4


def test_config_round_trips_through_json_and_rejects_unknown_fields():
    config = TrainingConfig(stage=DPO, dataset_dir="/d", output_dir="/o", max_length=4096)

    assert TrainingConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match=r"unknown training config field\(s\) \['rpo_alpha'\]"):
        TrainingConfig.from_json('{"rpo_alpha": 0.5}')


def test_value_errors_are_listed_together():
    config = TrainingConfig(stage="grpo", per_device_train_batch_size=0, report_to="wandb")

    errors = config.basic_errors()

    assert any("stage must be one of ('sft', 'dpo')" in e for e in errors)
    assert any("per_device_train_batch_size must be >= 1" in e for e in errors)
    assert any("report_to" in e for e in errors)


def test_run_key_follows_recipe_data_and_model_but_not_paths(dataset, tmp_path):
    config = TrainingConfig(stage=SFT, dataset_dir=str(dataset), output_dir="/runs/a")
    key = run_key(config, "model-a", "1")

    assert run_key(replace(config, output_dir="/elsewhere", run_name="x"), "model-a", "1") == key
    assert run_key(replace(config, learning_rate=3e-4), "model-a", "1") != key
    assert run_key(config, "model-b", "1") != key
    assert run_key(config, "model-a", "2") != key
    (dataset / "data-00000-of-00001.arrow").write_bytes(b"other rows")
    assert run_key(config, "model-a", "1") != key


def test_the_recipe_in_the_key_is_the_resolved_one():
    unset = recipe_parameters(TrainingConfig(stage=SFT))
    spelled_out = recipe_parameters(TrainingConfig(stage=SFT, learning_rate=1e-4))

    assert unset == spelled_out
    assert "output_dir" not in unset and "dataset_dir" not in unset


def test_a_local_model_is_identified_by_its_config_and_weight_files(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    (tmp_path / "model.safetensors").write_bytes(b"0" * 10)
    before = model_identity(str(tmp_path))

    (tmp_path / "model.safetensors").write_bytes(b"0" * 11)

    assert model_identity(str(tmp_path)) != before
    assert model_identity("Qwen/Qwen2.5-VL-7B-Instruct") != model_identity("Qwen/Qwen2.5-VL-3B")


def test_one_process_runs_the_module_and_several_go_through_accelerate(tmp_path):
    config = tmp_path / "run_config.json"

    single = launch_command(config)
    ddp = launch_command(config, num_processes=2, main_process_port=29999)
    deepspeed = launch_command(config, accelerate_config="configs/accelerate/deepspeed_zero2.yaml")

    assert single == [sys.executable, "-m", "cpo_pipeline.training.train", str(config)]
    assert ddp[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert ddp[ddp.index("--num_processes") + 1] == "2"
    assert ddp[ddp.index("--main_process_port") + 1] == "29999"
    assert ddp[-3:] == single[-3:]
    assert deepspeed[3:5] == ["--config_file", "configs/accelerate/deepspeed_zero2.yaml"]
    assert "--num_processes" not in deepspeed


@pytest.mark.parametrize(("name", "kind", "processes"), [
    ("single_gpu", "NO", 1), ("multi_gpu_ddp", "MULTI_GPU", 4), ("deepspeed_zero2", "DEEPSPEED", 4),
])
def test_the_shipped_accelerate_configs_load(name, kind, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml"))

    assert config.distributed_type.value == kind
    assert config.num_processes == processes


def test_the_zero2_config_shards_optimizer_and_gradients_and_leaves_sizes_to_the_trainer():
    from accelerate.commands.config.config_args import load_config_from_file

    accelerate = load_config_from_file(str(CONFIGS / "accelerate" / "deepspeed_zero2.yaml"))
    deepspeed = json.loads((ROOT / accelerate.deepspeed_config["deepspeed_config_file"])
                           .read_text())

    assert deepspeed["zero_optimization"]["stage"] == 2
    assert {deepspeed[key] for key in ("train_batch_size", "train_micro_batch_size_per_gpu",
                                       "gradient_accumulation_steps")} == {"auto"}
    assert deepspeed["bf16"]["enabled"] == "auto"
