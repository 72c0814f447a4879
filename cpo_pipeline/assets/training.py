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

import json
import os
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path

import dagster as dg

# Not re-exported by `dagster` in 1.13: what PipesSubprocessClient raises on a non-zero exit.
from dagster._core.errors import DagsterPipesExecutionError
from pydantic import Field, create_model

from cpo_pipeline.assets.preference import (
    diagnosis_only_pairs,
    preference_pairs,
    random_negative_pairs,
    sft_dataset,
)
from cpo_pipeline.preference.export import dataset_dir
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, PAPER, SFT, TINY, TINY_MODEL, TrainingConfig
from cpo_pipeline.training.launch import describe_command, launch_command, model_identity, run_key
from cpo_pipeline.training.plots import training_curves_png
from cpo_pipeline.training.report import PATH, metadata_type, summary_metadata
from cpo_pipeline.training.tracking import TRACKING_URI_ENV, sqlite_store
from cpo_pipeline.wiring.metadata import png_markdown

TRAINING_VERSION = "1"
GPU_POOL = "gpu"
_GROUP = "training"
_MLFLOW_DIRNAME = "mlflow"

# TrainingConfig fields the asset decides itself (paths, model, names); the others are run config.
_DECIDED_BY_THE_ASSET = frozenset({
    "stage", "dataset_dir", "eval_dataset_dir", "output_dir", "dataset_name",
    "ref_model_name_or_path", "model_name_or_path", "mlflow_tracking_uri", "run_name", "recipe",
})
_DPO_ONLY = frozenset({"beta", "sft_loss_weight"})
_SFT_ONLY = frozenset({"tiny_vision_pretraining_epochs", "tiny_model_size"})


def _run_config_class(name: str, stage: str) -> type[dg.Config]:
    """The launchpad config of a stage: every tunable TrainingConfig field with its default and
    help text (one source for both), plus what only the asset does."""
    hints = typing.get_type_hints(TrainingConfig)
    tunable = {
        f.name: (hints[f.name], Field(default=f.default, description=f.metadata["help"]))
        for f in fields(TrainingConfig)
        if f.name not in _DECIDED_BY_THE_ASSET and f.name not in (
            _SFT_ONLY if stage == DPO else _DPO_ONLY)
    }
    return create_model(
        name,
        __base__=dg.Config,
        force=(bool, Field(default=False, description=(
            "Train again even though a finished run with the same inputs and config exists "
            "(otherwise its model is reused and nothing is launched)."))),
        recipe=(str | None, Field(default=None, description=(
            f"Defaults for the unset fields: '{PAPER}' or '{TINY}'. None: '{TINY}' for the "
            f"tiny offline model, else '{PAPER}'."))),
        num_processes=(int, Field(default=1, description=(
            "Training processes (data parallel): above 1, the entry point runs under "
            "`accelerate launch` (DDP; over gloo without CUDA)."))),
        accelerate_config=(str | None, Field(default=None, description=(
            "An accelerate config file to launch with (e.g. configs/accelerate/"
            "deepspeed_zero2.yaml for the paper's ZeRO-2 multi-GPU runs)."))),
        **tunable,
    )


SFTModelConfig = _run_config_class("SFTModelConfig", SFT)
DPOModelConfig = _run_config_class("DPOModelConfig", DPO)


def _mlflow_uri(data_root: Path) -> str:
    return os.environ.get(TRACKING_URI_ENV) or sqlite_store(data_root / _MLFLOW_DIRNAME)


def _split_dirs(data_root: Path, dataset: str) -> tuple[Path, Path | None]:
    root = dataset_dir(data_root, dataset)
    held_out = root / "validate"
    return root / "train", held_out if held_out.is_dir() else None


def _typed(key: str, value: object) -> object:
    kind = metadata_type(key, value)
    if kind is None:
        return value
    return dg.MetadataValue.path(value) if kind == PATH else dg.MetadataValue.json(value)


def _metadata(summary: dict, run: Path, reported: dict | None, skipped: bool,
              command: str | None) -> dict:
    """What the UI shows: the run's figures (as reported through Pipes, or from the stored
    summary when skipped), the curves, the card, and how to rerun it by hand."""
    metadata = dict(reported) if reported is not None else {
        key: _typed(key, value) for key, value in summary_metadata(summary).items()}
    final = run_dirs.model_dir(run)
    png = training_curves_png(run_dirs.read_log_history(final),
                              f"{summary['stage']} on {summary.get('dataset_name')}")
    if png is not None:
        metadata["training_curves"] = png_markdown(png, "training curves")
    mlflow = summary.get("mlflow") or {}
    if mlflow.get("link"):
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow["link"])
    elif mlflow:
        metadata["mlflow_ui"] = dg.MetadataValue.md(
            f"`mlflow ui --backend-store-uri {mlflow['tracking_uri']}` (needs the full `mlflow` "
            f"package), run `{mlflow['run_id']}`")
    metadata["model_card"] = dg.MetadataValue.md((final / run_dirs.CARD).read_text())
    metadata["run_config"] = dg.MetadataValue.path(str(run / run_dirs.RUN_CONFIG))
    metadata["skipped_unchanged"] = skipped
    if command is not None:
        metadata["command"] = dg.MetadataValue.md(f"```\n{command}\n```")
    return metadata


def _failure(run: Path, error: Exception) -> dg.Failure:
    path = run / run_dirs.FAILURE
    if path.is_file():
        failure = json.loads(path.read_text())
        return dg.Failure(description=failure["message"],
                          metadata={"error": failure["error"], "run_dir": str(run)})
    return dg.Failure(description=f"the training process failed ({error}); its log is in the "
                      f"step's output", metadata={"run_dir": str(run)})


@dataclass(frozen=True)
class StartingModel:
    """A model a run starts from (or refers to): its directory or id, its identity for the run
    key, and whether it is the tiny offline model."""

    path: str
    identity: str
    tiny: bool


@dataclass(frozen=True)
class TrainedRun:
    run: Path
    summary: dict
    reported: dict | None  # what the process reported through Pipes; None when reused
    command: str | None  # the launch command; None when reused

    @property
    def reused(self) -> bool:
        return self.reported is None

    @property
    def data_version(self) -> str:
        return self.summary["data_version"]

    def metadata(self) -> dict:
        return _metadata(self.summary, self.run, self.reported, skipped=self.reused,
                         command=self.command)


def launch_training(
    context: dg.AssetExecutionContext, asset: str, stage: str, dataset_name: str,
    train_dir: Path, eval_dir: Path | None, config: dg.Config, settings: PipelineSettings,
    pipes: dg.PipesSubprocessClient, start: StartingModel,
    reference: StartingModel | None = None,
) -> TrainedRun:
    """Key the run, reuse it when finished (unless forced), else launch it through Pipes.
    `reference`: a DPO reference other than the starting model."""
    data_root = settings.data_root_path()
    if not train_dir.is_dir():
        raise dg.Failure(description=f"{train_dir} does not exist: materialize {dataset_name} "
                         "first (a split without rows is not written)")
    values = config.model_dump()
    force, num_processes = values.pop("force"), values.pop("num_processes")
    accelerate_config = values.pop("accelerate_config")
    recipe = values.pop("recipe") or (TINY if start.tiny else PAPER)
    training = TrainingConfig(
        stage=stage, dataset_dir=str(train_dir),
        eval_dataset_dir=str(eval_dir) if eval_dir else None, dataset_name=dataset_name,
        model_name_or_path=start.path, recipe=recipe,
        ref_model_name_or_path=reference.path if reference else None, **values)
    errors = training.basic_errors()
    if errors:
        raise dg.Failure(description="bad training config: " + "; ".join(errors))
    key = run_key(training, start.identity, TRAINING_VERSION,
                  reference.identity if reference else None)
    run = run_dirs.run_dir(data_root, asset, key)
    summary = run_dirs.read_summary(run)
    if summary is not None and not force:
        context.log.info(f"{asset}: inputs and config unchanged (run {run.name}); reusing "
                         f"{run_dirs.model_dir(run)} without training")
        return TrainedRun(run, summary, None, None)

    run.mkdir(parents=True, exist_ok=True)
    (run / run_dirs.FAILURE).unlink(missing_ok=True)
    if force:
        # A forced run is a new MLflow run, not a continuation of the finished one.
        (run / "mlflow_run_id").unlink(missing_ok=True)
    training = replace(training, output_dir=str(run), run_name=f"{asset}-{run.name}",
                       mlflow_tracking_uri=_mlflow_uri(data_root))
    command = launch_command(training.write(run / run_dirs.RUN_CONFIG), num_processes,
                             accelerate_config)
    context.log.info(f"{asset}: launching {describe_command(command)}")
    try:
        invocation = pipes.run(context=context, command=command,
                               env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    except DagsterPipesExecutionError as error:
        raise _failure(run, error) from None
    reported = invocation.get_materialize_result()
    return TrainedRun(run, run_dirs.read_summary(run), dict(reported.metadata or {}),
                      describe_command(command))


def train_model(
    context: dg.AssetExecutionContext, asset: str, stage: str, dataset: str,
    config: dg.Config, settings: PipelineSettings, pipes: dg.PipesSubprocessClient,
    start: StartingModel,
) -> dg.MaterializeResult:
    """One of the four model assets: its run on the dataset's splits, recorded as the asset's
    current model."""
    data_root = settings.data_root_path()
    train_dir, eval_dir = _split_dirs(data_root, dataset)
    trained = launch_training(context, asset, stage, dataset, train_dir, eval_dir, config,
                              settings, pipes, start)
    run_dirs.write_current(data_root, asset, trained.run, trained.data_version)
    return dg.MaterializeResult(metadata=trained.metadata(),
                                data_version=dg.DataVersion(trained.data_version))


def trained_start(run: Path, version: str) -> StartingModel:
    """A model this pipeline trained, as the start (or reference) of another run."""
    summary = run_dirs.read_summary(run)
    tiny = summary is not None and summary["base_model"] == TINY_MODEL
    return StartingModel(str(run_dirs.model_dir(run)), f"trained:{version}", tiny)


def sft_checkpoint(settings: PipelineSettings) -> StartingModel:
    """The model sft_model last materialized."""
    data_root = settings.data_root_path()
    current = run_dirs.read_current(data_root, "sft_model")
    if current is None:
        raise dg.Failure(description="sft_model has not been materialized under "
                         f"{data_root}: the DPO stages start from (and refer to) it")
    return trained_start(*current)


def _dpo_asset(name: str, dataset: dg.AssetsDefinition, description: str):
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
        return train_model(context, name, DPO, dataset.key.to_user_string(), config, settings,
                           pipes_subprocess_client, sft_checkpoint(settings))

    return _asset


@dg.asset(
    group_name=_GROUP,
    code_version=TRAINING_VERSION,
    pool=GPU_POOL,
    deps=[sft_dataset],
    kinds={"pytorch"},
    description="Stage 1: TRL SFTTrainer (LoRA) on sft_dataset — the policy model "
    "($CPO_POLICY_MODEL, else the tiny offline model) learns to answer with the factual "
    "trajectory. Trained in its own process through Dagster Pipes; the LoRA-merged model and "
    "its card under <data_root>/models/sft_model/.",
)
def sft_model(context: dg.AssetExecutionContext, config: SFTModelConfig,
              settings: PipelineSettings, pipes_subprocess_client: dg.PipesSubprocessClient):
    return train_model(context, "sft_model", SFT, "sft_dataset", config, settings,
                       pipes_subprocess_client, policy_start(settings))


def policy_start(settings: PipelineSettings) -> StartingModel:
    """The untrained policy SFT starts from: $CPO_POLICY_MODEL, else the tiny offline model."""
    path = settings.resolve().policy_model or TINY_MODEL
    return StartingModel(path, model_identity(path), path == TINY_MODEL)


cpo_model = _dpo_asset(
    "cpo_model", preference_pairs,
    "Stage 2, CPO: TRL DPOTrainer (sigmoid loss, beta 0.1, LoRA, vision tower frozen) on "
    "preference_pairs — chosen the factual trajectory, rejected its counterfactual — starting "
    "from sft_model, which is also the reference.")
dpo_random_model = _dpo_asset(
    "dpo_random_model", random_negative_pairs,
    "The paper's baseline: the CPO recipe on random_negative_pairs (rejected = another "
    "study's report), from sft_model.")
cpo_no_cot_model = _dpo_asset(
    "cpo_no_cot_model", diagnosis_only_pairs,
    "The paper's 'CPO without CoT' ablation: the CPO recipe on diagnosis_only_pairs (answer "
    "lines only), from sft_model.")

TRAINING_ASSETS = (sft_model, cpo_model, dpo_random_model, cpo_no_cot_model)
