"""Launching a training run from an asset: the launchpad configs of the two stages and the one
Pipes call, shared by the model assets and the staged runs.

Everything that does not need Dagster (the run key, the resolved config, the run directory, the
command) is `training.launch`'s; this module runs the command through Pipes and turns the run
into what the UI shows. It never imports torch, transformers or trl.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

# Not re-exported by `dagster` in 1.13: what PipesSubprocessClient raises on a non-zero exit.
from dagster._core.errors import DagsterPipesExecutionError
from pydantic import Field

from cpo_pipeline.training import run_dirs
from cpo_pipeline.training.config import DPO, PAPER, SFT, TINY, TrainingConfig
from cpo_pipeline.training.launch import (
    StartingModel,
    describe_command,
    plan_run,
    prepare_launch,
    resolve_training,
)
from cpo_pipeline.training.plots import training_curves_png
from cpo_pipeline.training.preflight import TrainingConfigError
from cpo_pipeline.training.report import PATH, metadata_type, summary_metadata
from cpo_pipeline.wiring.launchpad import Offered, launchpad_config
from cpo_pipeline.wiring.metadata import png_markdown

GPU_POOL = "gpu"

# TrainingConfig fields the asset decides itself (paths, model, names); the others are run config.
_DECIDED_BY_THE_ASSET = frozenset({
    "stage", "dataset_dir", "eval_dataset_dir", "output_dir", "dataset_name",
    "ref_model_name_or_path", "model_name_or_path", "mlflow_tracking_uri", "run_name", "recipe",
})
_DPO_ONLY = frozenset({"beta", "loss_type", "sft_loss_weight"})
_SFT_ONLY = frozenset({"tiny_vision_pretraining_epochs", "tiny_model_size"})


def _run_config_class(name: str, stage: str) -> type[dg.Config]:
    """The launchpad config of a stage: every tunable TrainingConfig field with its default and
    help text (one source for both), plus what only the launch decides."""
    stage_only = _SFT_ONLY if stage == DPO else _DPO_ONLY
    return launchpad_config(name, Offered(TrainingConfig,
                                          leave_out=_DECIDED_BY_THE_ASSET | stage_only), extra={
        "force": (bool, Field(default=False, description=(
            "Train again even though a finished run with the same inputs and config exists "
            "(otherwise its model is reused and nothing is launched)."))),
        "recipe": (str | None, Field(default=None, description=(
            f"Defaults for the unset fields: '{PAPER}' or '{TINY}'. None: '{TINY}' for the "
            f"tiny offline model, else '{PAPER}'."))),
        "num_processes": (int, Field(default=1, description=(
            "Training processes (data parallel): above 1, the entry point runs under "
            "`accelerate launch` (DDP; over gloo without CUDA)."))),
        "accelerate_config": (str | None, Field(default=None, description=(
            "An accelerate config file to launch with (e.g. configs/accelerate/"
            "deepspeed_zero2.yaml for the paper's ZeRO-2 multi-GPU runs)."))),
    })


SFTModelConfig = _run_config_class("SFTModelConfig", SFT)
DPOModelConfig = _run_config_class("DPOModelConfig", DPO)


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
    train_dir: Path, eval_dir: Path | None, config: dg.Config, data_root: Path,
    pipes: dg.PipesSubprocessClient, start: StartingModel,
    reference: StartingModel | None = None, overrides: dict | None = None,
) -> TrainedRun:
    """Key the run, reuse it when finished (unless forced), else launch it through Pipes.
    `reference`: a DPO reference other than the starting model; `overrides`: config fields the
    asset sets itself (over the run config's)."""
    if not train_dir.is_dir():
        raise dg.Failure(description=f"{train_dir} does not exist: materialize {dataset_name} "
                         "first (a split without rows is not written)")
    try:
        training, options = resolve_training(
            {**config.model_dump(), **(overrides or {})}, stage=stage, train_dir=train_dir,
            eval_dir=eval_dir, dataset_name=dataset_name, start=start, reference=reference)
    except TrainingConfigError as error:
        raise dg.Failure(description=str(error)) from None
    plan = plan_run(data_root, asset, training, start, reference)
    if plan.finished is not None and not options.force:
        context.log.info(f"{asset}: inputs and config unchanged (run {plan.run.name}); reusing "
                         f"{run_dirs.model_dir(plan.run)} without training")
        return TrainedRun(plan.run, plan.finished, None, None)
    command = prepare_launch(plan, data_root, asset, options)
    context.log.info(f"{asset}: launching {describe_command(command)}")
    try:
        invocation = pipes.run(context=context, command=command,
                               env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    except DagsterPipesExecutionError as error:
        raise _failure(plan.run, error) from None
    reported = invocation.get_materialize_result()
    return TrainedRun(plan.run, run_dirs.read_summary(plan.run), dict(reported.metadata or {}),
                      describe_command(command))
