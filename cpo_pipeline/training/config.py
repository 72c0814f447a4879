"""The training run's configuration: one dataclass for both stages, with the paper's defaults.

Plain Python (no torch): the Dagster assets build it, write it as JSON into the run directory, and
the entry point (`python -m cpo_pipeline.training.train run_config.json`) reads it back. Fields
left `None` are filled from the recipe by `resolved()`: the paper's for real models, a scaled-up
one for the tiny offline model, whose random weights learn nothing visible at the paper's rates.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SFT = "sft"
DPO = "dpo"
STAGES = (SFT, DPO)
# `model_name_or_path` value meaning: build the tiny offline LLaVA-style model from the training
# texts (cpo_pipeline.training.tiny_model) instead of loading one.
TINY_MODEL = "tiny-offline"
# Sizes the offline model can be built at (`tiny_model.OFFLINE_SIZES`): the CPU default, and a
# larger one of the same LLaVA layout for a GPU.
OFFLINE_SIZES = ("tiny", "small")
PAPER = "paper"
TINY = "tiny"
RECIPES = (PAPER, TINY)
MLFLOW = "mlflow"


@dataclass(frozen=True)
class Recipe:
    """What a recipe decides for the fields a config leaves unset."""

    learning_rate: float
    num_train_epochs: float
    warmup_ratio: float
    lora_modules_to_save: str
    sft_loss_weight: float = 0.0


# The NLL weights with a name (`sft_loss_weight`): the authors' CPO runs (the recipes' default;
# why, beside `_RECIPES`), plain sigmoid DPO (this project's default before), CPO++'s script
# (`--rpo_alpha 0.1`).
AUTHORS_SFT_LOSS_WEIGHT = 1.0
PLAIN_DPO_SFT_LOSS_WEIGHT = 0.0
CPO_PLUS_PLUS_SFT_LOSS_WEIGHT = 0.1
# TRL 1.x DPOTrainer's `loss_type` values ('sft' is added by `sft_loss_weight`, not named here).
PREFERENCE_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
                     "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop",
                     "sigmoid_norm")

# The paper: SFT lr 1e-4 with a short warm-up (its length is unstated: 10%, LLaMA-Factory's
# example), CPO lr 2e-5 without warm-up; one epoch each.
# The tiny model: its random output layer is too flat for LoRA alone to shape (the loss stays at
# log V), so it is trained as a whole beside the adapter, at rates that learn the answer format
# within the demo's budget. Its DPO rate was 2e-4 until the vision tower was pretrained; on the
# better SFT model that rate collapsed one epoch's answers (the demo's CPO model broke its answer
# line, a 500-patient cohort's three DPO models named Atelectasis for nearly every study).
# The preference stage is the authors' loss: DPO plus an NLL term on the chosen answer at weight
# 1 (`AUTHORS_SFT_LOSS_WEIGHT`). Their framework, ms-swift, defaulted DPO to `rpo_alpha=1.0`
# ("The paper recommends rpo_alpha=1.0") from 2.5 (Oct 2024) through 3.7 (Aug 2025) and their
# CPO script sets no `--rpo_alpha`, so the paper's runs (May 2025) most likely had it.
_RECIPES = {
    (PAPER, SFT): Recipe(1e-4, 1.0, 0.1, ""),
    (PAPER, DPO): Recipe(2e-5, 1.0, 0.0, "", AUTHORS_SFT_LOSS_WEIGHT),
    (TINY, SFT): Recipe(5e-3, 8.0, 0.1, "lm_head"),
    (TINY, DPO): Recipe(5e-5, 1.0, 0.0, "lm_head", AUTHORS_SFT_LOSS_WEIGHT),
}


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TrainingConfig:
    """One training run: the stage, its data and model, the recipe, and where it writes."""

    stage: str = field(default=SFT, metadata=_help(
        "sft (TRL SFTTrainer on messages + images) or dpo (TRL DPOTrainer on prompt / chosen / "
        "rejected + images, the reference being the starting model)."))
    dataset_dir: str = field(default="", metadata=_help(
        "The training split: a `datasets.load_from_disk` directory in TRL's conversational "
        "vision format (as the sft_dataset / *_pairs assets write it)."))
    eval_dataset_dir: str | None = field(default=None, metadata=_help(
        "A held-out split evaluated after training (eval loss; DPO reward accuracy and margin)."))
    output_dir: str = field(default="", metadata=_help(
        "The run directory: trainer/ holds resumable checkpoints, model/ the finished model "
        "(renamed in only when complete)."))
    dataset_name: str | None = field(default=None, metadata=_help(
        "The dataset's name, for the model card."))
    model_name_or_path: str = field(default=TINY_MODEL, metadata=_help(
        f"An image-text-to-text model: a local directory or a hub id (cached; no download "
        f"under HF_HUB_OFFLINE). '{TINY_MODEL}' builds the tiny offline model from the texts."))
    ref_model_name_or_path: str | None = field(default=None, metadata=_help(
        "dpo: the reference model's directory, when it is not the starting model (staged "
        "tuning keeps the first SFT model as the reference of every stage); None: the "
        "starting model."))
    tiny_vision_pretraining_epochs: int = field(default=30, metadata=_help(
        f"For '{TINY_MODEL}' only: epochs its random vision tower is first trained to tell the "
        "SFT split's answer labels apart in its images (a probe head, then dropped), standing "
        "in for a real VLM's pretrained image encoder; 0: leave the tower random (it then "
        "gives the language model nothing to condition on)."))
    tiny_vision_corpus_images: int = field(default=0, metadata=_help(
        f"For '{TINY_MODEL}' only: pretrain its vision tower on a separate rendered corpus of "
        "this many phantom radiographs (every finding painted independently; "
        "training/vision_corpus.py) instead of the SFT split's images, as a real encoder was "
        "pretrained on far more images than any fine-tuning set. The tower is made once per "
        "size, corpus and epochs and shared by every run and seed (cached under "
        "tiny_vision_cache_dir); 0: the SFT split's images."))
    tiny_vision_cache_dir: str | None = field(default=None, metadata=_help(
        "Where corpus-pretrained towers are kept for later runs (the assets set "
        "<data_root>/models/vision_tower); None: pretrained in the run, not kept."))
    tiny_model_size: str = field(default="tiny", metadata=_help(
        f"For '{TINY_MODEL}' only: 'tiny' (about 0.2 M parameters, the CPU default) or 'small' "
        "(about 38 M, the same LLaVA layout at a size a GPU trains in minutes)."))
    trust_remote_code: bool = field(default=False, metadata=_help(
        "Run the model repository's own Python code. Off: only transformers' classes load."))
    recipe: str = field(default=PAPER, metadata=_help(
        "Which defaults fill the unset fields: 'paper' or 'tiny' (the tiny model's demo rates)."))
    use_lora: bool = field(default=True, metadata=_help(
        "Train a LoRA adapter (merged into the saved model) instead of every weight."))
    lora_r: int = field(default=8, metadata=_help("LoRA rank (the paper: 8)."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA alpha (the paper: 32)."))
    lora_dropout: float = field(default=0.0, metadata=_help(
        "LoRA dropout (unstated in the paper; LLaMA-Factory's default 0)."))
    lora_target_modules: str = field(default="all-linear", metadata=_help(
        "'all-linear' (the paper: every linear layer but the output layer) or comma-separated "
        "module names."))
    lora_modules_to_save: str | None = field(default=None, metadata=_help(
        "Comma-separated modules trained in full beside the adapter. Default: the recipe's "
        "(none for the paper; lm_head for the tiny model)."))
    freeze_vision_tower: bool = field(default=True, metadata=_help(
        "Keep the vision encoder fixed (the paper, for CPO): no adapter and no gradient there."))
    learning_rate: float | None = field(default=None, metadata=_help(
        "Peak learning rate. Default: the recipe's (paper: SFT 1e-4, CPO 2e-5)."))
    num_train_epochs: float | None = field(default=None, metadata=_help(
        "Epochs. Default: the recipe's (paper: 1)."))
    max_steps: int = field(default=-1, metadata=_help(
        "Stop after this many optimizer steps (overrides epochs); -1: run the epochs."))
    warmup_ratio: float | None = field(default=None, metadata=_help(
        "Share of steps spent warming up. Default: the recipe's (paper: SFT short, CPO none)."))
    lr_scheduler_type: str = field(default="cosine", metadata=_help("Learning-rate schedule."))
    adam_beta1: float = field(default=0.9, metadata=_help("AdamW beta1 (the paper: 0.9)."))
    adam_beta2: float = field(default=0.98, metadata=_help("AdamW beta2 (the paper: 0.98)."))
    weight_decay: float = field(default=0.05, metadata=_help("AdamW weight decay (0.05)."))
    per_device_train_batch_size: int = field(default=4, metadata=_help(
        "Examples (DPO: pairs) per device and step."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help(
        "Steps accumulated per update: effective batch = this x per-device batch x processes "
        "(the paper's CPO: 64)."))
    max_length: int | None = field(default=None, metadata=_help(
        "Truncate sequences to this many tokens (the paper: SFT 2048, CPO 4096). Must exceed "
        "the image's tokens: truncation that cuts them fails the batch. None: never truncate."))
    max_pixels: int | None = field(default=None, metadata=_help(
        "Cap on an image's pixels for processors that resize by pixel count (Qwen2/2.5-VL; the "
        "paper: 1280*28*28)."))
    bf16: bool = field(default=False, metadata=_help("Train in bfloat16 (GPU)."))
    gradient_checkpointing: bool = field(default=False, metadata=_help(
        "Recompute activations in the backward pass (saves memory on large models)."))
    use_cpu: bool | None = field(default=None, metadata=_help(
        "Train on the CPU. None: when no CUDA device is visible."))
    cpu_threads: int | None = field(default=None, metadata=_help(
        "Intra-op threads on the CPU. None: 1 for the tiny model (too small to gain from more, "
        "and spinning threads stall when the cores are shared), torch's default otherwise."))
    seed: int = field(default=0, metadata=_help("Seed of the adapter's init and the data order."))
    beta: float = field(default=0.1, metadata=_help("DPO beta (TRL's default; unstated)."))
    loss_type: str = field(default="sigmoid", metadata=_help(
        "dpo: TRL's preference loss, or several comma-separated (weighted 1 each): sigmoid "
        "(DPO, the paper), ipo, hinge, apo_zero, sigmoid_norm, ... (TRL DPOConfig.loss_type). "
        "The NLL term is sft_loss_weight's, not named here."))
    sft_loss_weight: float | None = field(default=None, metadata=_help(
        "dpo: weight of an NLL term on the chosen answer beside the preference loss (TRL "
        "loss_type [..., 'sft']; ms-swift's rpo_alpha). Default: the recipe's, "
        f"{AUTHORS_SFT_LOSS_WEIGHT}: the authors' CPO runs (ms-swift 2.5-3.7 defaulted "
        "rpo_alpha to 1.0 and their script sets none). "
        f"{PLAIN_DPO_SFT_LOSS_WEIGHT}: plain DPO (this project's former default); "
        f"{CPO_PLUS_PLUS_SFT_LOSS_WEIGHT}: CPO++'s script."))
    logging_steps: int = field(default=5, metadata=_help(
        "Log metrics (console, MLflow, the curves) every this many steps; TRL's examples use "
        "10, 5 still draws the demo's short runs."))
    save_steps: int = field(default=50, metadata=_help(
        "Write a resumable checkpoint every this many steps."))
    save_total_limit: int = field(default=2, metadata=_help("Resumable checkpoints kept."))
    eval_samples: int = field(default=256, metadata=_help(
        "After training, evaluate on at most this many training examples (DPO: reward accuracy "
        "and margin on its own pairs) and as many held-out ones; 0: skip."))
    sample_max_new_tokens: int = field(default=96, metadata=_help(
        "Tokens of the answer generated for the first training image after training (recorded "
        "in the model card); 0: skip."))
    report_to: str = field(default=MLFLOW, metadata=_help("'mlflow' or 'none'."))
    mlflow_tracking_uri: str | None = field(default=None, metadata=_help(
        "MLflow store. Default: $MLFLOW_TRACKING_URI, else an SQLite store in the run "
        "directory."))
    mlflow_experiment: str = field(default="cpo_pipeline", metadata=_help(
        "MLflow experiment name."))
    run_name: str | None = field(default=None, metadata=_help("MLflow run name."))

    def resolved(self) -> TrainingConfig:
        """A copy with every recipe-dependent field filled in."""
        recipe = _RECIPES[(self.recipe, self.stage)]
        return replace(
            self,
            learning_rate=self.learning_rate if self.learning_rate is not None
            else recipe.learning_rate,
            num_train_epochs=self.num_train_epochs if self.num_train_epochs is not None
            else recipe.num_train_epochs,
            warmup_ratio=self.warmup_ratio if self.warmup_ratio is not None
            else recipe.warmup_ratio,
            lora_modules_to_save=self.lora_modules_to_save if self.lora_modules_to_save
            is not None else recipe.lora_modules_to_save,
            sft_loss_weight=self.sft_loss_weight if self.sft_loss_weight is not None
            else recipe.sft_loss_weight,
        )

    def basic_errors(self) -> list[str]:
        """What is wrong with the values on their own, before looking at any file (the paths
        are the entry point's to check)."""
        errors = []
        if self.stage not in STAGES:
            errors.append(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.recipe not in RECIPES:
            errors.append(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        if self.stage == DPO and self.model_name_or_path == TINY_MODEL:
            errors.append("the dpo stage starts from a trained (SFT) model: set "
                          "model_name_or_path to its directory")
        if self.stage == SFT and self.ref_model_name_or_path is not None:
            errors.append("ref_model_name_or_path is for the dpo stage; sft has no reference")
        if self.sft_loss_weight is not None and self.sft_loss_weight < 0:
            errors.append(f"sft_loss_weight must be >= 0, got {self.sft_loss_weight}")
        unknown = [name for name in self.preference_losses if name not in PREFERENCE_LOSSES]
        if "sft" in unknown:
            errors.append("loss_type names 'sft': the NLL term on chosen is sft_loss_weight's")
        elif unknown or not self.preference_losses:
            errors.append(f"loss_type {self.loss_type!r}: expected one or more of "
                          f"{', '.join(PREFERENCE_LOSSES)}, comma-separated")
        if self.tiny_model_size not in OFFLINE_SIZES:
            errors.append(f"tiny_model_size must be one of {OFFLINE_SIZES}, got "
                          f"{self.tiny_model_size!r}")
        if self.tiny_vision_corpus_images < 0:
            errors.append("tiny_vision_corpus_images must be >= 0, got "
                          f"{self.tiny_vision_corpus_images}")
        if self.tiny_vision_pretraining_epochs < 0:
            errors.append("tiny_vision_pretraining_epochs must be >= 0, got "
                          f"{self.tiny_vision_pretraining_epochs}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps", "lora_r"):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.report_to not in (MLFLOW, "none"):
            errors.append(f"report_to must be 'mlflow' or 'none', got {self.report_to!r}")
        return errors

    @property
    def preference_losses(self) -> list[str]:
        return [name.strip() for name in self.loss_type.split(",") if name.strip()]

    def trl_losses(self) -> tuple[list[str], list[float]]:
        """DPOConfig's `loss_type` and `loss_weights` (on a resolved config): each preference
        loss at weight 1, then 'sft' at `sft_loss_weight` when it is above 0."""
        losses = self.preference_losses
        weights = [1.0] * len(losses)
        if self.sft_loss_weight:
            losses, weights = [*losses, "sft"], [*weights, self.sft_loss_weight]
        return losses, weights

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingConfig:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config field(s) {unknown}")
        return cls(**values)

    def write(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path


# Fields that say where things are or who watches, not what is trained: left out of the run key
# (the datasets and the starting model enter it by content instead).
_NOT_IN_RUN_KEY = frozenset({
    "dataset_dir", "eval_dataset_dir", "output_dir", "dataset_name", "model_name_or_path",
    "ref_model_name_or_path", "report_to", "mlflow_tracking_uri", "mlflow_experiment", "run_name",
    "logging_steps", "save_steps", "save_total_limit", "use_cpu", "cpu_threads",
    "tiny_vision_cache_dir",
})


def recipe_parameters(config: TrainingConfig) -> dict[str, Any]:
    """The resolved fields that decide the trained weights: the run key's part of the config."""
    values = asdict(config.resolved())
    return {name: value for name, value in values.items() if name not in _NOT_IN_RUN_KEY}
