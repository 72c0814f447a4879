"""`mimic_cxr_source`: the raw MIMIC-CXR tree, observed; its data version is the manifest hash."""

import warnings

import dagster as dg

from cpo_pipeline.ingestion.source import manifest_hash, source_manifest
from cpo_pipeline.resources.settings import PipelineSettings


def observe_mimic_cxr_source(settings: PipelineSettings) -> dg.ObserveResult:
    source = settings.mimic_source()
    entries = source_manifest(source)
    return dg.ObserveResult(
        data_version=dg.DataVersion(manifest_hash(entries)),
        metadata={
            "roots": dg.MetadataValue.json([str(root) for root in source.roots]),
            "is_demo": source.is_demo,
            "manifest": dg.MetadataValue.json(entries),
        },
    )


# Dagster 1.13 has no stable way to declare data that is observed rather than built, only this
# beta decorator. Its warning alone is silenced, here (every Dagster package is pinned to one
# version and the tests exercise the observation), so any other beta warning still shows.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Function `observable_source_asset` is currently in beta",
                            dg.BetaWarning)
    mimic_cxr_source = dg.observable_source_asset(
        name="mimic_cxr_source",
        group_name="ingestion",
        description=(
            "The raw MIMIC-CXR tree (MIMIC_CXR_ROOT / MIMIC_CXR_JPG_ROOT), or the embedded "
            "synthetic demo tree under the data root when neither is set. Observing it hashes the "
            "tree's manifest, so downstream assets show as stale when the release changes."
        ),
    )(observe_mimic_cxr_source)
