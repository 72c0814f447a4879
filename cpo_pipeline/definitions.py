"""The single Dagster entry point: every asset, check, job, schedule and resource of the project."""

from __future__ import annotations

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
from cpo_pipeline.assets.source import mimic_cxr_source
from cpo_pipeline.assets.training import (
    cpo_model,
    cpo_no_cot_model,
    dpo_random_model,
    sft_model,
)
from cpo_pipeline.assets.trajectories import counterfactual_trajectories
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings

TRAINING = dg.AssetSelection.groups("training")
EVALUATION = dg.AssetSelection.groups("evaluation")

# Materializes the datasets downstream of the raw tree; the schedule below runs it after
# observing the source, so a changed release (new manifest hash) flows through. Training is not
# part of it: GPU runs start on purpose (the `train_models` job, or a selection), not on a cron.
dataset_refresh_job = dg.define_asset_job(
    "dataset_refresh",
    selection=(dg.AssetSelection.assets(mimic_cxr_source.key)
               | dg.AssetSelection.all() - TRAINING - EVALUATION),
    description="Observe MIMIC-CXR and re-materialize the dataset assets.",
)

train_models_job = dg.define_asset_job(
    "train_models",
    selection=TRAINING | EVALUATION,
    description="Train sft_model, then cpo_model, dpo_random_model and cpo_no_cot_model from it, "
    "then evaluate them side by side (each skipped when its inputs and config are unchanged).",
)

dataset_refresh_schedule = dg.ScheduleDefinition(
    job=dataset_refresh_job,
    cron_schedule="0 3 * * 1",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly dataset refresh (Monday 03:00); turn it on in the UI or with "
    "`dagster schedule start dataset_refresh_schedule`.",
)

# One settings resource, configured at launch, so the launchpad's `settings` config reaches the
# IO manager too: every path of a run comes from one data root.
settings = PipelineSettings.configure_at_launch()

defs = dg.Definitions(
    assets=[mimic_cxr_source, mimic_cxr_ingestion, concept_graph, counterfactual_trajectories,
            sft_dataset, preference_pairs, random_negative_pairs, diagnosis_only_pairs,
            sft_model, cpo_model, dpo_random_model, cpo_no_cot_model, model_evaluation],
    jobs=[dataset_refresh_job, train_models_job],
    schedules=[dataset_refresh_schedule],
    resources={
        "settings": settings,
        "io_manager": ParquetIOManager(settings=settings),
        "llm": LLMEndpointResource(),
        # Launches the training entry point as its own process (torch never loads here).
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
)
