"""Ingestion: the MIMIC-CXR tree → cxr_images, cxr_reports, cxr_labels, cxr_studies, ingest_rejects.

One multi-asset, because every table's rejects land in one `ingest_rejects` and the five must
describe the same snapshot of the tree. Re-runs are cheap: an image whose source bytes did not
change is not decoded again (the image store keeps its own record, so this holds whichever
tables a run writes).
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from cpo_pipeline import data_layout
from cpo_pipeline.ingestion.ingest import IngestedTables, IngestOptions, ingest
from cpo_pipeline.ingestion.summary import (
    label_prevalence,
    patients_in_several_splits,
    split_view_counts,
    thumbnail_grid,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.schemas import content_version
from cpo_pipeline.storage import atomic_target
from cpo_pipeline.wiring.metadata import png_markdown, sample_table

_LABEL_DOMAIN = {1.0, 0.0, -1.0}
_THUMBNAILS = 8


class IngestionConfig(dg.Config):
    n_stages: int = Field(
        default=3,
        description="Time-ordered stages for non-stationary training (within-patient visits).")
    label_source: str = Field(
        default="chexpert", description="Which automatic labeller's table to use: chexpert, negbio.")
    longest_side: int = Field(
        default=512, description="Longest side, in pixels, of the model-ready PNGs.")
    workers: int = Field(default=2, description="Processes decoding images.")
    max_reject_fraction: float = Field(
        default=0.05,
        description="The blocking check fails when more than this share of listed studies had "
        "an input rejected.")


# Every gate sits on cxr_studies, the table the later stages read, so any selection that
# writes it (`--select cxr_studies`, `+counterfactual_trajectories`, `*`) evaluates all of them
# before anything downstream runs.
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
        asset="cxr_studies",
        blocking=True,
        description="Labels are 1.0, 0.0, -1.0 or null.",
    ),
    dg.AssetCheckSpec(
        "rejects_below_bound",
        asset="cxr_studies",
        blocking=True,
        description="Share of listed studies with a rejected input (see ingest_rejects) is at "
        "most `max_reject_fraction`.",
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
            code_version="2",
            is_required=False,
        ),
        "cxr_studies": dg.AssetOut(
            description="The joined study table: ids, official split, chosen frontal image, "
            "findings text, labels, study datetime, within-patient visit index, time stage.",
            code_version="3",
            is_required=False,
        ),
        "ingest_rejects": dg.AssetOut(
            description="Every input that could not be used: stage, path (with row), reason.",
            code_version="3",
            is_required=False,
        ),
    },
    deps=["mimic_cxr_source"],
    check_specs=_CHECKS,
    group_name="ingestion",
    # Any one table can be selected (`--select cxr_studies`); all five are computed together
    # anyway, and only the selected ones are written.
    can_subset=True,
)
def mimic_cxr_ingestion(
    context: dg.AssetExecutionContext, config: IngestionConfig, settings: PipelineSettings
):
    data_root = settings.data_root_path()
    source = settings.mimic_source()
    options = IngestOptions(
        config.n_stages, config.label_source, config.longest_side, config.workers
    )
    tables = ingest(source, options, data_layout.images(data_root))
    context.log.info(
        f"{len(tables.studies)} studies, {len(tables.images)} images ({tables.decoded_images} "
        f"decoded, {tables.reused_images} unchanged since the store's last run), "
        f"{len(tables.rejects)} rejects from {[str(root) for root in source.roots]}"
    )
    grid = thumbnail_grid(tables.studies["image_path"].head(_THUMBNAILS).tolist())
    grid_path = data_layout.previews(data_root) / "cxr_images.png"
    with atomic_target(grid_path) as tmp:
        tmp.write_bytes(grid)

    metadata = {
        "cxr_images": {
            "decoded_this_run": tables.decoded_images,
            "images_per_view": dg.MetadataValue.json(
                tables.images["view_position"].fillna("(blank)").value_counts().to_dict()
            ),
            "thumbnails": png_markdown(grid, "preprocessed images"),
            "thumbnails_path": dg.MetadataValue.path(str(grid_path)),
            "sample": sample_table(tables.images),
        },
        "cxr_reports": {
            "labelled_section": dg.MetadataValue.json(
                tables.reports["labelled_section"].fillna("none").value_counts().to_dict()
            ),
            "sample": sample_table(tables.reports.drop(columns="raw_text")),
        },
        "cxr_labels": {
            "label_source": config.label_source,
            "prevalence": dg.MetadataValue.md(label_prevalence(tables.labels).to_markdown()),
        },
        "cxr_studies": {
            "studies_per_split_and_view": dg.MetadataValue.md(
                split_view_counts(tables.studies).to_markdown()),
            "lateral_only_studies": int(tables.studies["lateral_only"].sum()),
            "studies_without_labels": int(tables.studies["label_source"].isna().sum()),
            "stages": dg.MetadataValue.json(
                tables.studies["stage"].value_counts().sort_index().to_dict()
            ),
            "sample": sample_table(tables.studies),
        },
        "ingest_rejects": {
            "by_stage_and_reason": dg.MetadataValue.md(
                _rejects_by_reason(tables.rejects).to_markdown()),
            "sample": sample_table(tables.rejects),
        },
    }
    frames = {"cxr_images": tables.images, "cxr_reports": tables.reports,
              "cxr_labels": tables.labels, "cxr_studies": tables.studies,
              "ingest_rejects": tables.rejects}
    for name in (key.path[-1] for key in context.selected_asset_keys):
        yield dg.MaterializeResult(
            asset_key=name,
            value=frames[name],
            data_version=dg.DataVersion(content_version(frames[name], name)),
            metadata=metadata[name],
        )
    for result in _checks(tables, config.max_reject_fraction):
        if dg.AssetCheckKey(result.asset_key, result.check_name) in context.selected_asset_check_keys:
            if not result.passed:
                context.log.error(f"{result.check_name} failed: {result.description}")
            yield result


def _rejects_by_reason(rejects: pd.DataFrame) -> pd.DataFrame:
    # Reasons carry ids and values; their first clause is what groups them.
    reason = rejects["reason"].str.split(r"[:(]", n=1, regex=True).str[0].str.strip()
    table = rejects.assign(reason=reason).groupby(["stage", "reason"]).size().rename("count")
    return table.reset_index().set_index("stage")


def _checks(tables: IngestedTables, max_reject_fraction: float):
    studies = tables.studies
    leaking = patients_in_several_splits(studies)
    yield dg.AssetCheckResult(
        check_name="no_patient_in_two_splits",
        asset_key="cxr_studies",
        passed=not leaking,
        description=f"{len(leaking)} patients have studies in more than one split "
        f"(e.g. {leaking[:3]}); the bound is 0: the official split is patient-disjoint, and no "
        "config option relaxes it (a leak would put test patients in training). Check the "
        "split table (mimic-cxr-2.0.0-split.csv).",
        metadata={
            "patients_in_several_splits": len(leaking),
            "bound": 0,
            "examples": dg.MetadataValue.json(leaking[:10]),
        },
    )
    incomplete = studies["image_path"].isna() | studies["findings_text"].isna()
    yield dg.AssetCheckResult(
        check_name="every_study_has_image_and_findings",
        asset_key="cxr_studies",
        passed=not incomplete.any(),
        description=f"{int(incomplete.sum())} studies lack an image or a findings text "
        f"(e.g. {studies.loc[incomplete, 'study_id'].head(3).tolist()}); the bound is 0, and no "
        "config option relaxes it: a study without both cannot be trained on, and ingestion "
        "should have rejected it into ingest_rejects instead (a bug to report).",
        metadata={"incomplete_studies": int(incomplete.sum()), "bound": 0},
    )
    values = studies[list(CHEXPERT_LABELS)].stack().dropna()
    outside = values[~values.isin(_LABEL_DOMAIN)]
    yield dg.AssetCheckResult(
        check_name="label_values_in_domain",
        asset_key="cxr_studies",
        passed=outside.empty,
        description=f"{len(outside)} label values are outside 1.0 / 0.0 / -1.0 / null "
        f"(e.g. {sorted(set(outside.head(20).tolist()))[:3]}); the bound is 0, and no config "
        "option relaxes it. Check the labeller table `label_source` (run config of the "
        "mimic_cxr_ingestion op) reads: mimic-cxr-2.0.0-chexpert.csv or -negbio.csv.",
        metadata={"values_outside_domain": len(outside), "bound": 0},
    )
    rejects = tables.rejects
    # A rejected row whose ids could not even be parsed counts as one more affected study.
    unparsable = int(rejects["study_id"].isna().sum())
    rejected_studies = set(rejects["study_id"].dropna())
    affected = len(rejected_studies) + unparsable
    listed = len(set(studies["study_id"]) | rejected_studies) + unparsable
    fraction = affected / max(listed, 1)
    yield dg.AssetCheckResult(
        check_name="rejects_below_bound",
        asset_key="cxr_studies",
        passed=fraction <= max_reject_fraction,
        description=f"{fraction:.1%} of listed studies ({affected} of {listed}) had an input "
        f"rejected; the bound is {max_reject_fraction:.1%}. Each reject is in ingest_rejects "
        "with its file and reason; if this share is expected, raise `max_reject_fraction` "
        "(run config of the mimic_cxr_ingestion op).",
        metadata={
            "studies_with_rejects": affected,
            "studies_listed": listed,
            "fraction": round(fraction, 4),
            "bound": max_reject_fraction,
            "examples": sample_table(rejects[["path", "reason"]]),
        },
    )
