"""Model and processor: loading them safely, finding the vision tower, and the LoRA adapter.

Imported only by the training process (torch, transformers, peft at module level).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from cpo_pipeline.training.config import TrainingConfig
from cpo_pipeline.training.tiny_model import OFFLINE_SIZES, build_tiny_model

# What vision-language models call their image encoder: LLaVA, Gemma 3, PaliGemma
# (`vision_tower`), Qwen2/2.5-VL (`visual`), Idefics / SmolVLM (`vision_model`).
VISION_TOWER_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_encoder")


def find_vision_tower(model: torch.nn.Module) -> str | None:
    """The qualified name of the model's image encoder (the outermost module of a known name)."""
    names = [name for name, _ in model.named_modules()
             if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES]
    return min(names, key=lambda name: name.count(".")) if names else None


def linear_module_names(model: torch.nn.Module) -> set[str]:
    """The last name component of every linear layer (`q_proj`, `fc1`, …)."""
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)}


def module_suffixes(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}


def split_names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def lora_config(config: TrainingConfig, vision_tower: str | None) -> LoraConfig:
    """The paper's adapter: rank 8, alpha 32, on every linear layer; none in a frozen tower."""
    targets = config.lora_target_modules
    exclude = None
    if config.freeze_vision_tower and vision_tower is not None:
        exclude = rf"{re.escape(vision_tower)}\..*"
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets == "all-linear" else split_names(targets),
        exclude_modules=exclude,
        modules_to_save=split_names(config.lora_modules_to_save) or None,
        task_type="CAUSAL_LM",
    )


def freeze(model: torch.nn.Module, module_name: str) -> int:
    """Stop gradients into `module_name`; returns how many parameters that froze."""
    frozen = 0
    for parameter in model.get_submodule(module_name).parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def resizes_by_pixel_count(image_processor) -> bool:
    """Whether the image processor caps an image's pixel count (Qwen2/2.5-VL's `max_pixels`,
    kept since transformers 5 as `size["longest_edge"]`) rather than resizing to a shape."""
    accepted = getattr(getattr(image_processor, "valid_kwargs", None), "__annotations__", {})
    return "max_pixels" in accepted


def cap_pixels(image_processor, max_pixels: int) -> None:
    image_processor.size["longest_edge"] = max_pixels


def load_processor(path: str | Path, config: TrainingConfig) -> ProcessorMixin:
    """The model's processor, with the image pixel cap applied where the processor has one."""
    processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=config.trust_remote_code)
    image_processor = getattr(processor, "image_processor", None)
    # A processor without the cap is left alone: preflight refuses the option for it.
    if config.max_pixels is not None and resizes_by_pixel_count(image_processor):
        cap_pixels(image_processor, config.max_pixels)
    return processor


def load_model(path: str | Path, config: TrainingConfig) -> PreTrainedModel:
    """The image-text-to-text model, weights from safetensors only (never a pickle)."""
    return AutoModelForImageTextToText.from_pretrained(
        str(path),
        use_safetensors=True,
        trust_remote_code=config.trust_remote_code,
        dtype=torch.bfloat16 if config.bf16 else torch.float32,
    )


def meta_model(model_config, config: TrainingConfig) -> PreTrainedModel:
    """The model's module tree without weights (meta device): what checks look at for free."""
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(
            model_config, trust_remote_code=config.trust_remote_code)


def labelled_images(rows) -> tuple[list, list[tuple[str, ...]], tuple[str, ...]]:
    """An SFT split's images with the diagnoses their answers name, and the labels: what the
    tiny model's vision tower is pretrained on (the train split only, nothing held out) and
    what benchmarks/bench_vision_probe.py probes it with."""
    from cpo_pipeline.radiology.answer_format import parse_trajectory
    from cpo_pipeline.radiology.chexpert import DISEASES, NO_FINDING

    images = [row["images"][0] for row in rows]
    named = [parse_trajectory(row["messages"][-1]["content"]).diagnoses for row in rows]
    return images, named, (*DISEASES, NO_FINDING)


def build_tiny(texts: Iterable[str], out_dir: Path, seed: int, vision_examples=None,
               vision_epochs: int = 0, size: str = "tiny", corpus_images: int = 0,
               tower_cache: str | None = None) -> Path:
    """The offline model at `size` (`tiny_model.OFFLINE_SIZES`), its tokenizer trained on
    `texts` and its vision tower on `vision_examples` (see `tiny_model.build_tiny_model`) or,
    with `corpus_images`, on a rendered corpus that size (`vision_corpus.pretrained_tower`,
    kept in `tower_cache`), saved into `out_dir`."""
    spec = replace(OFFLINE_SIZES[size], seed=seed)
    tower = None
    if corpus_images > 0 and vision_epochs > 0:
        from cpo_pipeline.training.vision_corpus import pretrained_tower

        tower = pretrained_tower(spec, corpus_images, vision_epochs,
                                 Path(tower_cache) if tower_cache else None)
    return build_tiny_model(texts, spec, out_dir=out_dir, vision_examples=vision_examples,
                            vision_epochs=vision_epochs, vision_tower=tower)
