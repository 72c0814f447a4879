"""`decode_image_shards`: the image decoding of ingestion, one run per patient-folder shard.

At full scale (377,110 DICOMs) decoding is most of an ingest. This job, partitioned over
p10…p19, decodes one shard's images into the content-addressed image store per run, so a
backfill of its ten partitions under the Kubernetes run launcher is ten pods decoding at once.
The unpartitioned `mimic_cxr_ingestion` run afterwards finds every image already decoded and
writes the tables as it always does. A job of ops rather than partitioned assets: the asset
graph, `--select counterfactual_trajectories` and the unpartitioned CLI stay exactly as they are
(a partitioned asset would need `--partition` and could not share a run with them).
"""

import dagster as dg
from pydantic import Field

from cpo_pipeline import data_layout
from cpo_pipeline.ingestion.shards import SHARDS, decode_shard
from cpo_pipeline.resources.settings import PipelineSettings

SHARD_PARTITIONS = dg.StaticPartitionsDefinition(list(SHARDS))


class ShardDecodeConfig(dg.Config):
    longest_side: int = Field(
        default=512,
        description="Longest side of the PNGs: must equal the mimic_cxr_ingestion op's "
        "`longest_side`, or its run decodes every image again.")
    workers: int = Field(default=2, description="Processes decoding images in this run's pod.")


@dg.op(description="Decode the listed images of this run's shard into <data_root>/images and "
       "record them for the unpartitioned ingestion.")
def decode_image_shard(
    context: dg.OpExecutionContext, config: ShardDecodeConfig, settings: PipelineSettings
) -> dg.Output[None]:
    shard = context.partition_key
    outcome = decode_shard(settings.mimic_source(), shard,
                           data_layout.images(settings.data_root_path()),
                           longest_side=config.longest_side, workers=config.workers)
    context.log.info(f"{shard}: {outcome.listed} listed images, {outcome.decoded} decoded, "
                     f"{outcome.reused} already in the store, {len(outcome.rejects)} rejected "
                     "(retried and reported by mimic_cxr_ingestion)")
    return dg.Output(None, metadata={
        "shard": shard,
        "listed_images": outcome.listed,
        "decoded_this_run": outcome.decoded,
        "already_decoded": outcome.reused,
        "rejected": len(outcome.rejects),
        "record": dg.MetadataValue.path(str(outcome.record)),
    })


@dg.job(
    partitions_def=SHARD_PARTITIONS,
    description="Decode one MIMIC-CXR shard's images (p10…p19) into the image store; backfill "
    "all ten partitions to fan decoding out over pods, then materialize the ingestion assets.",
)
def decode_image_shards():
    decode_image_shard()
