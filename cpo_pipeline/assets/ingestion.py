"""Ingestion assets: index tables → `cxr_studies` and `ingest_rejects`."""

import dagster as dg

from cpo_pipeline.assets.source import mimic_cxr_source
from cpo_pipeline.assets.metadata import sample_table
from cpo_pipeline.ingestion.studies import build_study_index
from cpo_pipeline.ingestion.source import resolve_source
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.storage import frame_version


class IngestionConfig(dg.Config):
    n_stages: int = 3
    """Number of time-ordered stages for non-stationary training (within-patient visit order)."""


@dg.multi_asset(
    outs={
        "cxr_studies": dg.AssetOut(
            description="One row per study: ids, official split, chosen frontal image, study "
            "datetime, within-patient visit index and time-ordered stage.",
            code_version="1",
        ),
        "ingest_rejects": dg.AssetOut(
            description="Every input that could not be used: stage, path (with row), reason.",
            code_version="1",
        ),
    },
    deps=[mimic_cxr_source],
    group_name="ingestion",
)
def mimic_cxr_ingestion(
    context: dg.AssetExecutionContext, config: IngestionConfig, settings: PipelineSettings
):
    source = resolve_source(settings.resolve())
    studies, rejects = build_study_index(source, n_stages=config.n_stages)
    context.log.info(f"{len(studies)} studies, {len(rejects)} rejected inputs from {source.roots}")
    yield dg.Output(
        studies,
        output_name="cxr_studies",
        data_version=dg.DataVersion(frame_version(studies)),
        metadata={
            "studies_per_split": dg.MetadataValue.json(studies["split"].value_counts().to_dict()),
            "sample": sample_table(studies),
        },
    )
    yield dg.Output(
        rejects,
        output_name="ingest_rejects",
        data_version=dg.DataVersion(frame_version(rejects)),
        metadata={"by_reason": dg.MetadataValue.json(
            rejects["stage"].value_counts().to_dict() if len(rejects) else {}
        )},
    )

