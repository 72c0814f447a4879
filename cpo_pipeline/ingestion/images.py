"""Chest radiographs in (MIMIC-CXR DICOM or MIMIC-CXR-JPG), 8-bit grayscale PNGs out: decodes
(`ingestion.dicom_decode`) what the image store (`ingestion.image_store`) does not already hold
for an unchanged source, in a pool of worker processes.

One bad file never stops a batch: every failure becomes an `ImageReject` with a specific reason.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import repeat
from pathlib import Path

from PIL import ImageOps

from cpo_pipeline.ingestion.dicom_decode import RejectedSource, decode_source
from cpo_pipeline.ingestion.image_store import ImageResult, reusable_png, store_png
from cpo_pipeline.storage import sha256_file

# Bump when the pixels a given source and config produce change, so cached PNGs are remade.
_RECIPE_VERSION = 1
# Per-image work is ~50 ms, so even small chunks make pickling negligible, and small chunks keep
# every worker busy until the end of the batch.
_MAX_CHUNK = 16


@dataclass(frozen=True)
class ImageJob:
    """One source image to preprocess; `source_path` is absolute."""

    source_path: str
    dicom_id: str
    study_id: int
    subject_id: int


@dataclass(frozen=True)
class PreprocessConfig:
    """How images are shrunk and where the PNG store lives (e.g. `<data_root>/images`)."""

    store_root: str
    longest_side: int = 512
    equalize: bool = False

    def __post_init__(self) -> None:
        if self.longest_side < 1:
            raise ValueError(f"longest_side must be at least 1 pixel, got {self.longest_side}")

    @property
    def recipe(self) -> str:
        """What decides the PNG's pixels (not where it is stored): a cached PNG is reused only
        when its recipe matches."""
        return f"v{_RECIPE_VERSION} longest_side={self.longest_side} equalize={self.equalize}"


@dataclass(frozen=True)
class ImageReject:
    """A source image that could not be preprocessed, and why."""

    source_path: str
    dicom_id: str
    study_id: int
    reason: str


def preprocess_image(job: ImageJob, config: PreprocessConfig) -> ImageResult | ImageReject:
    """Decode one DICOM (or `.jpg`/`.jpeg`) source, make it display-ready and store it as a PNG.

    Never raises for a bad file: any failure is returned as an `ImageReject`.
    """
    try:
        return _preprocess(job, config)
    except RejectedSource as rejected:
        reason = str(rejected)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the batch
        reason = f"unexpected {type(error).__name__}: {error}"
    return ImageReject(job.source_path, job.dicom_id, job.study_id, reason)


def _preprocess(job: ImageJob, config: PreprocessConfig) -> ImageResult:
    try:
        # Hashed from the file, not from bytes held for decoding: streaming spares a ~15 MB copy.
        source_sha256 = sha256_file(Path(job.source_path))
    except FileNotFoundError as error:
        raise RejectedSource("file missing") from error
    except OSError as error:
        raise RejectedSource(f"unreadable file: {error.strerror or error}") from error
    shrunk = decode_source(job.source_path, config.longest_side)
    # Equalised after shrinking: the histogram it flattens is the one the model sees.
    image = ImageOps.equalize(shrunk.image) if config.equalize else shrunk.image
    path, image_sha256 = store_png(image, config.store_root)
    return ImageResult(
        dicom_id=job.dicom_id,
        study_id=job.study_id,
        subject_id=job.subject_id,
        source_path=job.source_path,
        source_sha256=source_sha256,
        rows=shrunk.rows,
        cols=shrunk.cols,
        photometric_interpretation=shrunk.photometric_interpretation,
        transfer_syntax_uid=shrunk.transfer_syntax_uid,
        bits_stored=shrunk.bits_stored,
        view_position=shrunk.view_position,
        image_path=str(path),
        image_sha256=image_sha256,
        width=image.width,
        height=image.height,
        recipe=config.recipe,
    )


def _preprocess_or_reuse(
    job: ImageJob, config: PreprocessConfig, previous: ImageResult | None
) -> ImageResult | ImageReject:
    if previous is not None:
        stored = reusable_png(
            previous, job.source_path, recipe=config.recipe, store_root=config.store_root
        )
        if stored is not None:
            # The same pixels, re-pointed at this job and store (a moved data root).
            return replace(
                previous,
                study_id=job.study_id,
                subject_id=job.subject_id,
                source_path=job.source_path,
                image_path=str(stored),
            )
    return preprocess_image(job, config)


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork when this process has one thread (cheapest start); otherwise forkserver, since
    forking a process whose other threads hold a lock (logging, I/O) can deadlock the child,
    and a Dagster step has such threads. The server preloads this module, so its workers start
    as cheap forks too."""
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def preprocess_images(
    jobs: Sequence[ImageJob],
    config: PreprocessConfig,
    *,
    workers: int,
    cache: Mapping[str, ImageResult] | None = None,
) -> tuple[list[ImageResult], list[ImageReject]]:
    """Preprocess `jobs` in a pool of `workers` processes (1: inline, no pool); each list keeps
    job order.

    `cache` maps dicom_id to an earlier result: when the source's bytes hash the same, the recipe
    matches and the PNG is still in the store, that result is returned without decoding.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cache = cache or {}
    previous = [cache.get(job.dicom_id) for job in jobs]
    if workers == 1:
        outcomes = list(map(_preprocess_or_reuse, jobs, repeat(config), previous))
    else:
        chunksize = max(1, min(_MAX_CHUNK, len(jobs) // (workers * 4)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            outcomes = list(
                pool.map(_preprocess_or_reuse, jobs, repeat(config), previous, chunksize=chunksize)
            )
    results = [outcome for outcome in outcomes if isinstance(outcome, ImageResult)]
    rejects = [outcome for outcome in outcomes if isinstance(outcome, ImageReject)]
    return results, rejects
