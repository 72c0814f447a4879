"""A training config that cannot run stops before any weight is loaded or any step taken, with
a message that names what is wrong; the run directory holds no checkpoint and no model."""

from pathlib import Path

import pytest
from datasets import Dataset, Features, Image, List, Value
from transformers import LlamaConfig, LlamaForCausalLM

from cpo_pipeline.preference.prompt import DEFAULT_REQUEST
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, SFT, TINY, TrainingConfig
from cpo_pipeline.training.preflight import TrainingConfigError
from cpo_pipeline.training.tiny_model import build_tiny_model
from cpo_pipeline.training.train import CONFIG_ERROR_EXIT, main, run_training
from cpo_pipeline_tests.training.sets import ANSWERS, save_pair_set, save_sft_set


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model([DEFAULT_REQUEST, *ANSWERS],
                            out_dir=tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def sft_set(tmp_path_factory):
    return save_sft_set(tmp_path_factory.mktemp("sft") / "train")


@pytest.fixture(scope="module")
def pair_set(tmp_path_factory):
    return save_pair_set(tmp_path_factory.mktemp("pairs") / "train")


def _config(tmp_path, dataset, **fields) -> TrainingConfig:
    values = {"stage": SFT, "dataset_dir": str(dataset), "output_dir": str(tmp_path / "run"),
              "report_to": "none", "recipe": TINY, **fields}
    return TrainingConfig(**values)


def _rejected(config: TrainingConfig, match: str) -> None:
    """`config` fails with a message matching `match`, having written no checkpoint or model."""
    with pytest.raises(TrainingConfigError, match=match):
        run_training(config)
    run = Path(config.output_dir)
    assert not run_dirs.trainer_dir(run).exists()
    assert not run_dirs.model_dir(run).exists()


def test_an_unknown_model_path_is_named(tmp_path, pair_set):
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path=str(tmp_path / "nope"))

    _rejected(config, r"model '.*nope' does not exist \(no such directory\)")


def test_a_hub_id_that_is_not_cached_is_refused_offline(tmp_path, pair_set):
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path="no-such-org/no-such-vlm")

    _rejected(config, r"neither a local model directory nor a hub id in the local cache "
                      r"and HF_HUB_OFFLINE is set")


def test_a_text_only_model_is_not_image_text_to_text(tmp_path, pair_set):
    text_model = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2)).save_pretrained(
        text_model)
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path=str(text_model))

    _rejected(config, r"is a 'llama' model \(\['LlamaForCausalLM'\]\), not an image-text-to-text")


def test_weights_load_only_from_safetensors(tmp_path, pair_set, tiny_dir):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path=str(pickled))

    _rejected(config, r"has no .safetensors weights \(pickled weights: \['pytorch_model.bin'\]\)")


def test_a_missing_dataset_says_which_asset_to_materialize(tmp_path):
    _rejected(_config(tmp_path, tmp_path / "absent"), r"absent does not exist: materialize")


def test_an_empty_dataset_is_refused(tmp_path):
    empty = tmp_path / "empty"
    features = Features({"images": List(Image()),
                         "messages": List({"role": Value("string"), "content": Value("string")})})
    Dataset.from_dict({"images": [], "messages": []}, features=features).save_to_disk(str(empty))

    _rejected(_config(tmp_path, empty), r"empty")


def test_an_image_less_dataset_is_refused(tmp_path):
    text_only = save_sft_set(tmp_path / "text", with_images=False)

    _rejected(_config(tmp_path, text_only), r"has no 'images' column: the sft stage trains a "
                                            r"vision-language model")


def test_a_set_of_the_other_stage_is_refused(tmp_path, pair_set):
    _rejected(_config(tmp_path, pair_set), r"lacks the sft stage's column\(s\) \['messages'\]")


def test_a_pixel_cap_the_processor_cannot_apply_is_refused(tmp_path, pair_set, tiny_dir):
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path=str(tiny_dir),
                     max_pixels=1280 * 28 * 28)

    _rejected(config, r"max_pixels is set, but CLIPImageProcessorPil .* does not resize by "
                      r"pixel count")


def test_adapter_targets_the_model_lacks_are_refused(tmp_path, pair_set, tiny_dir):
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path=str(tiny_dir),
                     lora_target_modules="q_proj,c_attn")

    _rejected(config, r"lora_target_modules \['c_attn'\] name no linear layer")


def test_a_length_limit_that_would_cut_the_image_is_refused(tmp_path, pair_set, tiny_dir):
    config = _config(tmp_path, pair_set, stage=DPO, model_name_or_path=str(tiny_dir),
                     max_length=12)

    _rejected(config, r"max_length 12 does not exceed the first training prompt's \d+ tokens "
                      r"\(image tokens included\)")


def test_the_entry_point_exits_2_and_records_the_reason(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = _config(tmp_path, tmp_path / "absent").write(tmp_path / "run_config.json")

    status = main([str(config)])

    assert status == CONFIG_ERROR_EXIT
    assert "does not exist: materialize" in capsys.readouterr().err
    assert "does not exist" in (run / run_dirs.FAILURE).read_text()


def test_the_pixel_cap_reaches_a_processor_that_resizes_by_pixel_count():
    from PIL import Image as PILImage
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from cpo_pipeline.training.modeling import cap_pixels, resizes_by_pixel_count

    qwen = Qwen2VLImageProcessorPil()
    image = PILImage.new("RGB", (512, 512))

    cap_pixels(qwen, 112 * 112)

    assert resizes_by_pixel_count(qwen)
    # 14-pixel patches: a 512 x 512 image capped at 112 x 112 pixels is 8 x 8 patches.
    assert qwen(images=[image], return_tensors="pt")["image_grid_thw"].tolist() == [[1, 8, 8]]
