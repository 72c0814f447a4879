"""sft_model, cpo_model, dpo_random_model, cpo_no_cot_model: the paper's two training stages, its
random-negative DPO baseline and its no-CoT ablation.

Each launches the training entry point (`python -m cpo_pipeline.training.train`, or under
`accelerate launch`) as its own process through Dagster Pipes; the process reports the metrics,
the checkpoint directory and the model's content-hash data version. This module never imports
torch, transformers or trl. A run is keyed by content (recipe, datasets, starting model, code
version): the same key reuses the finished model without launching anything unless `force` is
set, and a killed run resumes from its checkpoints. The three DPO assets start from, and use
as reference, the model sft_model last materialized. All four sit in the `gpu` concurrency pool
(one at a time; run monitoring in dagster.yaml frees the slot of a cancelled run).
"""

from pathlib import Path

import dagster as dg

from cpo_pipeline import data_layout
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, SFT, TrainingConfig
from cpo_pipeline.training.launch import (
    TRAINING_VERSION,
    StartingModel,
    policy_start,
    trained_start,
)
from cpo_pipeline.wiring.training_launch import (
    GPU_POOL,
    DPOModelConfig,
    SFTModelConfig,
    launch_training,
)

_GROUP = "training"


def _split_dirs(data_root: Path, dataset: str) -> tuple[Path, Path | None]:
    root = data_layout.dataset(data_root, dataset)
    held_out = root / "validate"
    return root / "train", held_out if held_out.is_dir() else None


def train_model(
    context: dg.AssetExecutionContext, asset: str, stage: str, dataset: str,
    config: dg.Config, settings: PipelineSettings, pipes: dg.PipesSubprocessClient,
    start: StartingModel, overrides: dict | None = None,
) -> dg.MaterializeResult:
    """One of the model assets: its run on the dataset's splits, recorded as the asset's
    current model (`overrides`: config fields the asset sets over the run config's)."""
    data_root = settings.data_root_path()
    train_dir, eval_dir = _split_dirs(data_root, dataset)
    trained = launch_training(context, asset, stage, dataset, train_dir, eval_dir, config,
                              data_root, pipes, start, overrides=overrides)
    run_dirs.write_current(data_root, asset, trained.run, trained.data_version)
    return dg.MaterializeResult(metadata=trained.metadata(),
                                data_version=dg.DataVersion(trained.data_version))


def sft_checkpoint(settings: PipelineSettings) -> StartingModel:
    """The model sft_model last materialized."""
    data_root = settings.data_root_path()
    current = run_dirs.read_current(data_root, "sft_model")
    if current is None:
        raise dg.Failure(description="sft_model has not been materialized under "
                         f"{data_root}: the DPO stages start from (and refer to) it")
    return trained_start(*current)


def _dpo_asset(name: str, dataset: str, description: str):
    @dg.asset(
        name=name,
        group_name=_GROUP,
        code_version=TRAINING_VERSION,
        pool=GPU_POOL,
        deps=["sft_model", dataset],
        kinds={"pytorch"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, config: DPOModelConfig,
               settings: PipelineSettings, pipes_subprocess_client: dg.PipesSubprocessClient):
        return train_model(context, name, DPO, dataset, config, settings,
                           pipes_subprocess_client, sft_checkpoint(settings))

    return _asset


@dg.asset(
    group_name=_GROUP,
    code_version=TRAINING_VERSION,
    pool=GPU_POOL,
    deps=["sft_dataset"],
    kinds={"pytorch"},
    description="Stage 1: TRL SFTTrainer (LoRA) on sft_dataset — the policy model "
    "($CPO_POLICY_MODEL, else the tiny offline model) learns to answer with the factual "
    "trajectory. Trained in its own process through Dagster Pipes; the LoRA-merged model and "
    "its card under <data_root>/models/sft_model/.",
)
def sft_model(context: dg.AssetExecutionContext, config: SFTModelConfig,
              settings: PipelineSettings, pipes_subprocess_client: dg.PipesSubprocessClient):
    return train_model(context, "sft_model", SFT, "sft_dataset", config, settings,
                       pipes_subprocess_client, policy_start(settings.resolve().policy_model))


cpo_model = _dpo_asset(
    "cpo_model", "preference_pairs",
    f"Stage 2, CPO: TRL DPOTrainer (sigmoid DPO plus NLL on chosen at `sft_loss_weight`, the "
    f"authors' loss; `beta` (default {TrainingConfig.beta}), LoRA, vision tower frozen) on "
    "preference_pairs — chosen the factual trajectory, rejected its counterfactual — starting "
    "from sft_model, which is also the reference.")
dpo_random_model = _dpo_asset(
    "dpo_random_model", "random_negative_pairs",
    "The paper's baseline: the CPO recipe on random_negative_pairs (rejected = another "
    "study's report), from sft_model.")
cpo_no_cot_model = _dpo_asset(
    "cpo_no_cot_model", "diagnosis_only_pairs",
    "The paper's 'CPO without CoT' ablation: the CPO recipe on diagnosis_only_pairs (answer "
    "lines only), from sft_model.")


@dg.asset(
    group_name=_GROUP,
    code_version=TRAINING_VERSION,
    pool=GPU_POOL,
    deps=["sft_model", "cpo_model", "sft_dataset"],
    kinds={"pytorch"},
    description="The control a preference stage must beat: SFT continued from sft_model on "
    "sft_dataset for as many optimizer steps as cpo_model trained (`max_steps` -1, the "
    "default; a positive value sets them). Whatever CPO adds over this is the preference "
    "signal, not more training.",
)
def sft_continued_model(context: dg.AssetExecutionContext, config: SFTModelConfig,
                        settings: PipelineSettings,
                        pipes_subprocess_client: dg.PipesSubprocessClient):
    overrides = {}
    if config.max_steps == -1:
        overrides["max_steps"] = _trained_steps(settings.data_root_path(), "cpo_model")
    return train_model(context, "sft_continued_model", SFT, "sft_dataset", config, settings,
                       pipes_subprocess_client, sft_checkpoint(settings), overrides)


def _trained_steps(data_root: Path, asset: str) -> int:
    """The optimizer steps the run `asset` last materialized took."""
    current = run_dirs.read_current(data_root, asset)
    summary = run_dirs.read_summary(current[0]) if current is not None else None
    if summary is None:
        raise dg.Failure(description=f"{asset} has not been materialized under {data_root}: "
                         "continued SFT takes as many steps as it trained (or set max_steps)")
    return int(summary["global_step"])


TRAINING_ASSETS = (sft_model, cpo_model, dpo_random_model, cpo_no_cot_model,
                   sft_continued_model)
