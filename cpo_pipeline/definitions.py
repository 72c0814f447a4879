"""The single Dagster entry point: every asset, check, job, schedule and resource of the project."""

from __future__ import annotations

import os

import dagster as dg

from cpo_pipeline.assets.concepts import concept_graph
from cpo_pipeline.assets.evaluation import model_evaluation
from cpo_pipeline.assets.ingestion import mimic_cxr_ingestion
from cpo_pipeline.assets.preference import (
    diagnosis_only_pairs,
    preference_pairs,
    random_negative_pairs,
    sft_dataset,
)
from cpo_pipeline.assets.shards import decode_image_shards
from cpo_pipeline.assets.source import mimic_cxr_source
from cpo_pipeline.assets.staged import staged_evaluation, staged_models, staged_training_sets
from cpo_pipeline.assets.training import (
    cpo_model,
    cpo_no_cot_model,
    dpo_random_model,
    sft_continued_model,
    sft_model,
)
from cpo_pipeline.assets.trajectories import counterfactual_trajectories
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.pipes_k8s import training_pipes_client
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.sensors import REFRESH_JOB_NAME, mimic_cxr_source_changed

TRAINING = dg.AssetSelection.groups("training")
EVALUATION = dg.AssetSelection.groups("evaluation")
STAGED = dg.AssetSelection.groups("staged")
# The source is listed so the run observes it first: a changed tree (new manifest hash) is what
# the rebuilt tables then describe.
SOURCE = dg.AssetSelection.assets(mimic_cxr_source.key)
DATASET = SOURCE | dg.AssetSelection.groups(
    "ingestion", "concepts", "counterfactuals", "preference")

REFRESH_CRON_ENV = "CPO_REFRESH_CRON"
DEFAULT_REFRESH_CRON = "0 3 * * 1"
# Training runs hold the GPU pool; one that hangs (a stuck NCCL collective, a dead node) would
# hold it forever. Run monitoring cancels a run past this many seconds; a launch tag
# `dagster/max_runtime` overrides it for one run.
TRAINING_MAX_RUNTIME_S = 24 * 3600
# Queued runs with this tag run one at a time (`tag_concurrency_limits` in deploy/dagster.yaml),
# on top of the `gpu` pool the training assets sit in.
GPU_RUN_TAGS = {"cpo/gpu": "1", "dagster/max_runtime": str(TRAINING_MAX_RUNTIME_S)}

# The datasets downstream of the raw tree, and no GPU: what the schedule and the sensor launch.
refresh_dataset_job = dg.define_asset_job(
    REFRESH_JOB_NAME,
    selection=DATASET,
    description="Observe mimic_cxr_source, then ingestion, concept graph, counterfactual "
    "trajectories and preference data; unchanged studies and images are reused, not redone.",
)

# Training starts on purpose (this job, or a selection), never on the refresh's cron or sensor.
train_and_evaluate_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=TRAINING | EVALUATION,
    tags=GPU_RUN_TAGS,
    description="Train sft_model, then cpo_model, dpo_random_model and cpo_no_cot_model from it "
    "and sft_continued_model for as many steps as cpo_model, then evaluate them side by side (each skipped when its inputs and config are unchanged).",
)

# Tuning across the time-ordered stages (assets/staged.py); its upstream is the datasets.
staged_tuning_job = dg.define_asset_job(
    "staged_tuning",
    selection=STAGED,
    tags=GPU_RUN_TAGS,
    description="Cut the training sets by stage, SFT on stage 0, tune each method stage after "
    "stage, and score every stage's model on every stage's test studies (forgetting, drift).",
)
full_chain_job = dg.define_asset_job(
    "full_chain",
    selection=SOURCE | dg.AssetSelection.all(),
    tags=GPU_RUN_TAGS,
    description="Everything from observing mimic_cxr_source to model_evaluation and the "
    "staged tuning, in one run.",
)


def _refresh_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    cron = os.environ.get(REFRESH_CRON_ENV, DEFAULT_REFRESH_CRON)
    try:
        return dg.ScheduleDefinition(
            job=job,
            cron_schedule=cron,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description=f"The dataset refresh on a cron (${REFRESH_CRON_ENV}, now {cron!r}; "
            f"default {DEFAULT_REFRESH_CRON!r}, Mondays 03:00); turn it on in the UI or with "
            "`dagster schedule start refresh_dataset_schedule`.",
        )
    except dg.DagsterInvalidDefinitionError as error:
        raise dg.DagsterInvalidDefinitionError(
            f"{REFRESH_CRON_ENV}={cron!r} is not a 5-field cron expression "
            f"(unset, the refresh runs at {DEFAULT_REFRESH_CRON!r})") from error


refresh_dataset_schedule = _refresh_schedule(refresh_dataset_job)

# One settings resource, configured at launch, so the launchpad's `settings` config reaches the
# IO manager too: every path of a run comes from one data root.
settings = PipelineSettings.configure_at_launch()

defs = dg.Definitions(
    assets=[mimic_cxr_source, mimic_cxr_ingestion, concept_graph, counterfactual_trajectories,
            sft_dataset, preference_pairs, random_negative_pairs, diagnosis_only_pairs,
            sft_model, cpo_model, dpo_random_model, cpo_no_cot_model, sft_continued_model,
            model_evaluation,
            staged_training_sets, staged_models, staged_evaluation],
    # decode_image_shards: image decoding fanned out over the shards p10…p19 (assets/shards.py),
    # a partitioned op job beside the assets, so the asset graph and the users' commands stay.
    jobs=[refresh_dataset_job, train_and_evaluate_job, staged_tuning_job, full_chain_job,
          decode_image_shards],
    schedules=[refresh_dataset_schedule],
    sensors=[mimic_cxr_source_changed],
    resources={
        "settings": settings,
        "io_manager": ParquetIOManager(settings=settings),
        "llm": LLMEndpointResource(),
        # Launches the training entry point as its own process (torch never loads here): a
        # local subprocess, or with CPO_TRAINING_LAUNCHER=k8s a GPU pod (resources/pipes_k8s.py).
        "pipes_subprocess_client": training_pipes_client(settings),
    },
)
