"""The refresh sensor: a `refresh_dataset` run whenever the raw MIMIC-CXR tree changes.

A sensor rather than declarative automation (`AutomationCondition`): the refresh must be the
named `refresh_dataset` run (its selection, tags and the same launch as the weekly schedule),
and automation conditions would have to sit on every downstream asset definition, each
deciding on its own, with the source asset needing an auto-observe interval of its own. Here
one function observes the tree exactly as the source asset does (the manifest hash), keeps the
last version it saw in its cursor, and asks for one run per change, which a test can tick
without a daemon.
"""

from __future__ import annotations

import dagster as dg

from cpo_pipeline.assets.source import mimic_cxr_source, observe_mimic_cxr_source
from cpo_pipeline.resources.settings import PipelineSettings

REFRESH_JOB_NAME = "refresh_dataset"
# Observing hashes the index tables and lists the ten shard folders: cheap, but on the full
# release not free, and a new release lands weeks apart.
OBSERVE_INTERVAL_S = 3600
SOURCE_VERSION_TAG = "cpo/mimic_cxr_source_version"


def last_observed_version(instance: dg.DagsterInstance) -> str | None:
    """The data version the instance last recorded for `mimic_cxr_source` (a run observed it)."""
    record = instance.get_latest_data_version_record(mimic_cxr_source.key, is_source=True)
    if record is None or record.asset_observation is None:
        return None
    return record.asset_observation.data_version


@dg.sensor(
    job_name=REFRESH_JOB_NAME,
    minimum_interval_seconds=OBSERVE_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Observes mimic_cxr_source (the manifest hash of MIMIC_CXR_ROOT / "
    "MIMIC_CXR_JPG_ROOT, or the demo tree) every hour and requests a refresh_dataset run when "
    "it differs from the version last seen. Turn it on in the UI or with `dagster sensor start "
    "mimic_cxr_source_changed`.",
)
def mimic_cxr_source_changed(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    # The tree the run will read by default: the environment's settings, as the run's own
    # `settings` resource resolves them when the launchpad leaves them unset.
    observation = observe_mimic_cxr_source(PipelineSettings())
    version = observation.data_version.value
    # Without a cursor (first tick, or a reset) the instance's last observation decides, so
    # turning the sensor on does not rebuild a tree a run has already seen.
    seen = context.cursor or last_observed_version(context.instance)
    if version == seen:
        return dg.SensorResult(
            skip_reason=f"mimic_cxr_source unchanged (data version {version[:12]})",
            cursor=version)
    context.log.info(
        f"mimic_cxr_source changed: {(seen or 'none recorded')[:12]} -> {version[:12]}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(tags={SOURCE_VERSION_TAG: version})], cursor=version)
