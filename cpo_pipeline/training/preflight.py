"""Checks that stop a bad training config before any weight is loaded or step is taken.

Each names what it looked at and what was expected: the dataset directory and row, the model
path and its type, the option and what the model offers instead. The checks read files,
configs and the model's module tree on the meta device, never the weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from cpo_pipeline.training.config import DPO, SFT, TrainingConfig

# The columns each stage's trainer reads, besides the images.
STAGE_COLUMNS = {SFT: ("messages",), DPO: ("prompt", "chosen", "rejected")}
IMAGE_COLUMN = "images"


class TrainingConfigError(ValueError):
    """A training config that cannot run, found before any heavy work."""


@dataclass(frozen=True)
class Datasets:
    train: object  # datasets.Dataset
    eval: object | None


def _fail(message: str) -> None:
    raise TrainingConfigError(message)


def check_fields(config: TrainingConfig) -> None:
    errors = config.basic_errors()
    errors += [f"{name} is required" for name in ("dataset_dir", "output_dir")
               if not getattr(config, name)]
    if errors:
        _fail("bad training config: " + "; ".join(errors))


def load_split(directory: str, stage: str):
    """A dataset split the stage can train on: present, non-empty, with its columns and an
    existing image on every row."""
    from datasets import load_from_disk

    path = Path(directory)
    if not path.is_dir():
        _fail(f"dataset {path} does not exist: materialize the dataset asset first")
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, IndexError) as error:
        # `datasets` saves an empty dataset without a shard and then cannot load it back.
        _fail(f"dataset {path} is empty or incomplete: no rows could be read from it "
              f"({type(error).__name__}: {error})")
    if len(dataset) == 0:
        _fail(f"dataset {path} is empty: there is nothing to train on")
    missing = [c for c in (IMAGE_COLUMN, *STAGE_COLUMNS[stage]) if c not in dataset.column_names]
    if IMAGE_COLUMN in missing:
        _fail(f"dataset {path} has no '{IMAGE_COLUMN}' column: the {stage} stage trains a "
              f"vision-language model on image-text examples (columns: {dataset.column_names})")
    if missing:
        _fail(f"dataset {path} lacks the {stage} stage's column(s) {missing} "
              f"(columns: {dataset.column_names}); is it the other stage's set?")
    _check_images(dataset, path)
    return dataset


def _check_images(dataset, path: Path) -> None:
    images = dataset.data.column(IMAGE_COLUMN).combine_chunks()
    counts = pc.fill_null(pc.list_value_length(images), 0).to_numpy(zero_copy_only=False)
    without = (counts == 0).nonzero()[0]
    if len(without) == len(dataset):
        _fail(f"dataset {path} is image-less: none of its {len(dataset)} rows has an image")
    if len(without):
        _fail(f"dataset {path}: row {int(without[0])} (and {len(without) - 1} more) has no image")
    flat = images.flatten()
    paths, inline = flat.field("path").to_pylist(), flat.field("bytes").is_valid().to_pylist()
    for index, (image_path, embedded) in enumerate(zip(paths, inline, strict=True)):
        if not embedded and (image_path is None or not os.path.isfile(image_path)):
            _fail(f"dataset {path}: image {index} ({image_path}) does not exist")


def load_datasets(config: TrainingConfig) -> Datasets:
    train = load_split(config.dataset_dir, config.stage)
    held_out = load_split(config.eval_dataset_dir, config.stage) if config.eval_dataset_dir else None
    return Datasets(train, held_out)


def check_model_source(config: TrainingConfig):
    """The starting model's config: it exists, is image-text-to-text, and has safetensors
    weights. Returns the transformers config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    name = config.model_name_or_path
    local = Path(name).expanduser()
    looks_local = local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not local.is_dir():
        _fail(f"model {name!r} does not exist (no such directory)")
    if looks_local and not (local / "config.json").is_file():
        _fail(f"model directory {local} has no config.json: not a Hugging Face model")
    try:
        model_config = AutoConfig.from_pretrained(
            str(local) if looks_local else name, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        where = " and HF_HUB_OFFLINE is set, so the hub is not asked" if offline else ""
        _fail(f"model {name!r} is neither a local model directory nor a hub id in the local "
              f"cache{where} ({type(error).__name__}: {str(error).splitlines()[0]})")
    model_type = getattr(model_config, "model_type", None)
    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        architectures = getattr(model_config, "architectures", None)
        _fail(f"model {name!r} is a {model_type!r} model ({architectures}), not an "
              "image-text-to-text model: CPO tunes a vision-language model (e.g. Qwen2.5-VL, "
              "LLaVA, Gemma 3)")
    if looks_local and not any(local.glob("*.safetensors")):
        pickles = sorted(p.name for p in local.glob("*.bin")) or "none"
        _fail(f"model directory {local} has no .safetensors weights (pickled weights: {pickles});"
              " weights are only loaded from safetensors")
    return model_config


def check_model_fits(config: TrainingConfig, model_config, processor, example_length) -> None:
    """The options against what the model offers: the adapter's and the frozen modules, the
    pixel cap, gradient checkpointing and the length limit. `example_length()` gives the
    token count of the first training prompt (image tokens included)."""
    from transformers import ProcessorMixin

    from cpo_pipeline.training.modeling import (
        find_vision_tower,
        linear_module_names,
        meta_model,
        module_suffixes,
        resizes_by_pixel_count,
        split_names,
    )

    name = config.model_name_or_path
    if not isinstance(processor, ProcessorMixin):
        _fail(f"model {name!r} has a {type(processor).__name__}, not a multimodal processor")
    if not getattr(processor, "chat_template", None):
        _fail(f"model {name!r}'s processor has no chat template: the conversational examples "
              "cannot be rendered")
    if config.max_pixels is not None and not resizes_by_pixel_count(processor.image_processor):
        _fail(f"max_pixels is set, but {type(processor.image_processor).__name__} of model "
              f"{name!r} does not resize by pixel count; unset it (the cap is for Qwen2/2.5-VL)")
    model = meta_model(model_config, config)
    tower = find_vision_tower(model)
    if config.freeze_vision_tower and tower is None:
        _fail(f"freeze_vision_tower is on, but model {name!r} has no module named one of "
              "vision_tower / visual / vision_model / vision_encoder / image_encoder")
    if config.use_lora and config.lora_target_modules != "all-linear":
        linear = linear_module_names(model)
        unknown = [m for m in split_names(config.lora_target_modules) if m not in linear]
        if unknown:
            _fail(f"lora_target_modules {unknown} name no linear layer of model {name!r}; "
                  f"its linear layers: {sorted(linear)}")
    if config.use_lora:
        suffixes = module_suffixes(model)
        unknown = [m for m in split_names(config.lora_modules_to_save) if m not in suffixes]
        if unknown:
            _fail(f"lora_modules_to_save {unknown} name no module of model {name!r}")
    if config.gradient_checkpointing and not model.supports_gradient_checkpointing:
        _fail(f"gradient_checkpointing is on, but model {name!r} does not support it")
    if config.max_length is not None:
        length = example_length()
        if config.max_length <= length:
            _fail(f"max_length {config.max_length} does not exceed the first training prompt's "
                  f"{length} tokens (image tokens included) for model {name!r}: truncation "
                  "would cut the answer or the image; raise it or set None")
