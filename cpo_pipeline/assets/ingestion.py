"""Ingestion: the MIMIC-CXR tree → cxr_images, cxr_reports, cxr_labels, cxr_studies, ingest_rejects.

One multi-asset, because every table's rejects land in one `ingest_rejects` and the five must
describe the same snapshot of the tree. Re-runs are cheap: an image whose source bytes did not
change is not decoded again (the previous `cxr_images` table is the cache).
"""

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from cpo_pipeline.assets.metadata import markdown_table, png_markdown, sample_table
from cpo_pipeline.assets.source import mimic_cxr_source
from cpo_pipeline.ingestion.ingest import IngestedTables, IngestOptions, ingest
from cpo_pipeline.ingestion.source import resolve_source
from cpo_pipeline.ingestion.summary import (
    label_prevalence,
    patients_in_several_splits,
    split_view_counts,
    thumbnail_grid,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.schemas import content_version
from cpo_pipeline.storage import atomic_target, table_path

_LABEL_DOMAIN = {1.0, 0.0, -1.0}
_THUMBNAILS = 8


class IngestionConfig(dg.Config):
    n_stages: int = 3
    """Number of time-ordered stages for non-stationary training (within-patient visit order)."""
    label_source: str = "chexpert"
    """Which automatic labeller's table to use: chexpert or negbio."""
    longest_side: int = 512
    """Longest side, in pixels, of the preprocessed model-ready PNGs."""
    workers: int = 2
    """Processes decoding images."""
    max_reject_fraction: float = 0.05
    """The blocking check fails when more than this share of studies had an input rejected."""


_CHECKS = [
    dg.AssetCheckSpec(
        "no_patient_in_two_splits",
        asset="cxr_studies",
        blocking=True,
        description="Official splits are patient-disjoint: leakage must be 0.",
    ),
    dg.AssetCheckSpec("every_study_has_image_and_findings", asset="cxr_studies", blocking=True),
    dg.AssetCheckSpec(
        "label_values_in_domain",
        asset="cxr_labels",
        blocking=True,
        description="Labels are 1.0, 0.0, -1.0 or null.",
    ),
    dg.AssetCheckSpec(
        "rejects_below_bound",
        asset="ingest_rejects",
        blocking=True,
        description="Share of listed studies with a rejected input is at most "
        "`max_reject_fraction`.",
    ),
]


@dg.multi_asset(
    outs={
        "cxr_images": dg.AssetOut(
            description="One row per usable image: ids, view, source size, photometric "
            "interpretation, transfer syntax, the model-ready PNG and its sha256.",
            code_version="1",
            is_required=False,
        ),
        "cxr_reports": dg.AssetOut(
            description="One row per study with a usable report: raw text, sections, the "
            "section the official rule labels, and the findings text later stages train on.",
            code_version="1",
            is_required=False,
        ),
        "cxr_labels": dg.AssetOut(
            description="The 14 CheXpert labels per study (1 / 0 / -1 / null) and their source.",
            code_version="1",
            is_required=False,
        ),
        "cxr_studies": dg.AssetOut(
            description="The joined study table: ids, official split, chosen frontal image, "
            "findings text, labels, study datetime, within-patient visit index, time stage.",
            code_version="2",
            is_required=False,
        ),
        "ingest_rejects": dg.AssetOut(
            description="Every input that could not be used: stage, path (with row), reason.",
            code_version="2",
            is_required=False,
        ),
    },
    deps=[mimic_cxr_source],
    check_specs=_CHECKS,
    group_name="ingestion",
    # Any one table can be selected (`--select cxr_studies`); all five are computed together
    # anyway, and only the selected ones are written.
    can_subset=True,
)
def mimic_cxr_ingestion(
    context: dg.AssetExecutionContext, config: IngestionConfig, settings: PipelineSettings
):
    resolved = settings.resolve()
    source = resolve_source(resolved)
    previous_path = table_path(resolved.data_root, ["cxr_images"])
    previous = pq.read_table(previous_path).to_pandas() if previous_path.exists() else None
    options = IngestOptions(
        config.n_stages, config.label_source, config.longest_side, config.workers
    )
    tables = ingest(source, options, resolved.data_root / "images", previous)
    context.log.info(
        f"{len(tables.studies)} studies, {len(tables.images)} images "
        f"({tables.decoded_images} decoded, the rest unchanged), {len(tables.rejects)} rejects "
        f"from {[str(root) for root in source.roots]}"
    )
    grid = thumbnail_grid(tables.studies["image_path"].head(_THUMBNAILS).tolist())
    grid_path = resolved.data_root / "previews" / "cxr_images.png"
    with atomic_target(grid_path) as tmp:
        tmp.write_bytes(grid)

    outputs = [
        _output(
            "cxr_images",
            tables.images,
            {
                "decoded_this_run": tables.decoded_images,
                "images_per_view": dg.MetadataValue.json(
                    tables.images["view_position"].fillna("(blank)").value_counts().to_dict()
                ),
                "thumbnails": png_markdown(grid, "preprocessed images"),
                "thumbnails_path": dg.MetadataValue.path(str(grid_path)),
                "sample": sample_table(tables.images),
            },
        ),
        _output(
            "cxr_reports",
            tables.reports,
            {
                "labelled_section": dg.MetadataValue.json(
                    tables.reports["labelled_section"].fillna("none").value_counts().to_dict()
                ),
                "sample": sample_table(tables.reports.drop(columns="raw_text")),
            },
        ),
        _output(
            "cxr_labels",
            tables.labels,
            {
                "label_source": config.label_source,
                "prevalence": markdown_table(label_prevalence(tables.labels)),
            },
        ),
        _output(
            "cxr_studies",
            tables.studies,
            {
                "studies_per_split_and_view": markdown_table(split_view_counts(tables.studies)),
                "lateral_only_studies": int(tables.studies["lateral_only"].sum()),
                "stages": dg.MetadataValue.json(
                    tables.studies["stage"].value_counts().sort_index().to_dict()
                ),
                "sample": sample_table(tables.studies),
            },
        ),
        _output(
            "ingest_rejects",
            tables.rejects,
            {
                "by_stage_and_reason": markdown_table(_rejects_by_reason(tables.rejects)),
                "sample": sample_table(tables.rejects),
            },
        ),
    ]
    selected = context.op_execution_context.selected_output_names
    yield from (output for output in outputs if output.output_name in selected)
    checks = context.selected_asset_check_keys
    yield from (
        result
        for result in _checks(tables, config.max_reject_fraction)
        if dg.AssetCheckKey(result.asset_key, result.check_name) in checks
    )


def _output(name: str, frame: pd.DataFrame, metadata: dict) -> dg.Output:
    return dg.Output(
        frame,
        output_name=name,
        data_version=dg.DataVersion(content_version(frame, name)),
        metadata=metadata,
    )


def _rejects_by_reason(rejects: pd.DataFrame) -> pd.DataFrame:
    # Reasons carry ids and values; their first clause is what groups them.
    reason = rejects["reason"].str.split(r"[:(]", n=1, regex=True).str[0].str.strip()
    table = rejects.assign(reason=reason).groupby(["stage", "reason"]).size().rename("count")
    return table.reset_index().set_index("stage")


def _checks(tables: IngestedTables, max_reject_fraction: float):
    leaking = patients_in_several_splits(tables.studies)
    yield dg.AssetCheckResult(
        check_name="no_patient_in_two_splits",
        asset_key="cxr_studies",
        passed=not leaking,
        metadata={
            "patients_in_several_splits": len(leaking),
            "examples": dg.MetadataValue.json(leaking[:10]),
        },
    )
    incomplete = tables.studies["image_path"].isna() | tables.studies["findings_text"].isna()
    yield dg.AssetCheckResult(
        check_name="every_study_has_image_and_findings",
        asset_key="cxr_studies",
        passed=not incomplete.any(),
        metadata={"incomplete_studies": int(incomplete.sum())},
    )
    values = tables.labels[list(CHEXPERT_LABELS)].stack().dropna()
    outside = values[~values.isin(_LABEL_DOMAIN)]
    yield dg.AssetCheckResult(
        check_name="label_values_in_domain",
        asset_key="cxr_labels",
        passed=outside.empty,
        metadata={"values_outside_domain": len(outside)},
    )
    # A rejected row whose ids could not even be parsed counts as one more affected study.
    unparsable = int(tables.rejects["study_id"].isna().sum())
    rejected_studies = set(tables.rejects["study_id"].dropna())
    affected = len(rejected_studies) + unparsable
    listed = len(set(tables.studies["study_id"]) | rejected_studies) + unparsable
    fraction = affected / max(listed, 1)
    yield dg.AssetCheckResult(
        check_name="rejects_below_bound",
        asset_key="ingest_rejects",
        passed=fraction <= max_reject_fraction,
        metadata={
            "studies_with_rejects": affected,
            "studies_listed": listed,
            "fraction": round(fraction, 4),
            "bound": max_reject_fraction,
        },
    )
