"""`mimic_cxr_source`: the raw MIMIC-CXR tree, observed; its data version is the manifest hash."""

import dagster as dg

from cpo_pipeline.ingestion.source import manifest_hash, resolve_source, source_manifest
from cpo_pipeline.resources.settings import PipelineSettings


@dg.observable_source_asset(
    group_name="ingestion",
    description=(
        "The raw MIMIC-CXR tree (MIMIC_CXR_ROOT / MIMIC_CXR_JPG_ROOT), or the embedded synthetic "
        "demo tree under the data root when neither is set. Observing it hashes the tree's "
        "manifest, so downstream assets show as stale when the release changes."
    ),
)
def mimic_cxr_source(settings: PipelineSettings) -> dg.ObserveResult:
    source = resolve_source(settings.resolve())
    entries = source_manifest(source)
    return dg.ObserveResult(
        data_version=dg.DataVersion(manifest_hash(entries)),
        metadata={
            "roots": dg.MetadataValue.json([str(root) for root in source.roots]),
            "is_demo": source.is_demo,
            "manifest": dg.MetadataValue.json(entries),
        },
    )
