"""Decoding one patient-folder shard (p10…p19) into the image store, so that decoding, the long
pole of a full ingest, can fan out over machines.

A shard run decodes only its shard's listed images and records them in a file of its own
(`image_store.write_shard_record`); the unpartitioned ingestion then reads those records with the
store's decode cache and decodes nothing they cover. Images a shard run rejects are not recorded:
the unpartitioned run tries them again and is the one that reports them in `ingest_rejects`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpo_pipeline.ingestion.image_store import read_decode_cache, same_pixels, write_shard_record
from cpo_pipeline.ingestion.images import (
    ImageJob,
    ImageReject,
    PreprocessConfig,
    preprocess_images,
)
from cpo_pipeline.ingestion.index import read_image_index
from cpo_pipeline.ingestion.source import MimicSource

# `files/p10 … p19`: "p" and the first two digits of the 8-digit subject_id.
SHARDS = tuple(f"p{prefix}" for prefix in range(10, 20))


def shard_of(subject_id: int) -> str:
    """The patient folder group a subject's studies sit in, e.g. 10000032 → "p10"."""
    return f"p{str(subject_id)[:2]}"


@dataclass(frozen=True)
class ShardDecode:
    shard: str
    listed: int
    decoded: int
    reused: int
    rejects: list[ImageReject]
    record: Path


def decode_shard(
    source: MimicSource, shard: str, image_store: Path, *, longest_side: int = 512,
    workers: int = 2,
) -> ShardDecode:
    """Decode (or reuse from the store) every listed image of `shard` and record the results.

    `longest_side` must be the unpartitioned ingestion's (its recipe decides whether a PNG is
    reused), as must `image_store` (`<data_root>/images`).
    """
    if shard not in SHARDS:
        raise ValueError(f"unknown shard {shard!r}: expected one of {', '.join(SHARDS)}")
    index, _, _ = read_image_index(source)
    rows = index[index["subject_id"].map(shard_of) == shard]
    jobs = [ImageJob(p, d, int(t), int(s)) for p, d, t, s in zip(
        rows["source_path"], rows["dicom_id"], rows["study_id"], rows["subject_id"])]
    cache = read_decode_cache(image_store)
    config = PreprocessConfig(store_root=str(image_store), longest_side=longest_side)
    results, rejects = preprocess_images(jobs, config, workers=workers, cache=cache)
    record = write_shard_record(image_store, shard, results)
    decoded = sum(1 for result in results if not same_pixels(cache.get(result.dicom_id), result))
    return ShardDecode(shard, len(jobs), decoded, len(results) - decoded, rejects, record)
