"""Chest radiographs in (MIMIC-CXR DICOM or MIMIC-CXR-JPG), 8-bit grayscale PNGs out, stored by
the hash of their bytes so identical images share one file.

One bad file never stops a batch: every failure becomes an `ImageReject` with a specific reason.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID

from cpo_pipeline.storage import atomic_target, content_hash, sha256_file, write_parquet

# Bump when the pixels a given source and config produce change, so cached PNGs are remade.
_RECIPE_VERSION = 1
# Measured on RG1_UNCR at 512 px: level 4 is within 1% of level 9's size at a third of the
# default level 6's time (12 ms vs 35 ms); levels 1-3 are ~18% larger.
PNG_COMPRESS_LEVEL = 4
# Per-image work is ~50 ms, so even small chunks make pickling negligible, and small chunks keep
# every worker busy until the end of the batch.
_MAX_CHUNK = 16
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Beside the PNGs: which source (by hash) and recipe each stored PNG was made from.
DECODE_CACHE_NAME = "decoded.parquet"
# Beside it: one record per shard run (`write_shard_record`), folded into it by the next full run.
SHARD_RECORDS_DIRNAME = "decoded-shards"


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
class ImageResult:
    """A preprocessed image. The DICOM attributes are None for JPG sources; `rows`/`cols` are the
    source's size, `width`/`height` the PNG's."""

    dicom_id: str
    study_id: int
    subject_id: int
    source_path: str
    source_sha256: str
    rows: int
    cols: int
    photometric_interpretation: str | None
    transfer_syntax_uid: str | None
    bits_stored: int | None
    view_position: str | None
    image_path: str
    image_sha256: str
    width: int
    height: int
    recipe: str


@dataclass(frozen=True)
class ImageReject:
    """A source image that could not be preprocessed, and why."""

    source_path: str
    dicom_id: str
    study_id: int
    reason: str


@dataclass(frozen=True)
class _ShrunkImage:
    """A decoded, display-ready, resized grayscale image and what the source said about itself."""

    image: Image.Image
    rows: int
    cols: int
    photometric_interpretation: str | None = None
    transfer_syntax_uid: str | None = None
    bits_stored: int | None = None
    view_position: str | None = None


class _Rejected(Exception):
    """Raised inside this module to turn a failure into an `ImageReject` with this reason."""


def _shrink(image: Image.Image, longest_side: int) -> None:
    # thumbnail keeps the aspect ratio, never enlarges (upscaling adds no information, only
    # bytes; the model's processor resizes anyway) and lets the JPEG decoder skip detail it
    # would throw away.
    image.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)


def _open_dicom(path: str) -> Dataset:
    """Parse a DICOM file, telling truncation apart from other damage."""
    # pydicom reads a cut file leniently: an undefined-length element (encapsulated pixel data)
    # that hits the end only warns, and a defined-length one silently keeps the bytes it got.
    # Recording its warnings loses nothing: pydicom logs each one as well.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError as error:
            raise _Rejected("not a DICOM file (no DICM preamble at byte 128)") from error
        except Exception as error:
            raise _Rejected(
                f"malformed or truncated DICOM: {type(error).__name__}: {error}"
            ) from error
    for warning in caught:
        if str(warning.message).startswith("End of file"):
            raise _Rejected(f"truncated DICOM: {warning.message}")
    if len(dataset):
        # Only the element the file ends in can be short, and it is the one with the last tag.
        last_tag = max(dataset.keys())
        last = dataset.get_item(last_tag)
        if (
            isinstance(last, RawDataElement)
            and last.value is not None
            and last.length != _UNDEFINED_LENGTH
            and len(last.value) < last.length
        ):
            raise _Rejected(
                f"truncated DICOM: the file ends inside {last_tag} {keyword_for_tag(last_tag)}, "
                f"{len(last.value)} of {last.length} bytes present"
            )
    return dataset


def _require_decoder(syntax: UID) -> None:
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        name = syntax.name if syntax.name != str(syntax) else "not a syntax pydicom knows"
        raise _Rejected(
            f"unsupported transfer syntax {syntax} ({name}): no pixel-data plugin can decode it"
        )


def _has_voi(dataset: Dataset) -> bool:
    """(0028,3010) VOI LUT Sequence, or both (0028,1050) Window Center and (0028,1051) Width."""
    windowed = all(dataset.get(name) not in (None, "") for name in ("WindowCenter", "WindowWidth"))
    return bool(dataset.get("VOILUTSequence")) or windowed


def _stored_range(dataset: Dataset) -> tuple[int, int]:
    """The values (0028,0101) Bits Stored can hold, signed when (0028,0103) Pixel
    Representation is 1."""
    bits = int(dataset.BitsStored)
    if int(dataset.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _display_table(dataset: Dataset, lowest: int, highest: int) -> np.ndarray:
    """The 8-bit display value of every storable value, from the lowest one up: modality LUT,
    then VOI LUT or window, else min-max over `lowest..highest` (the image's range);
    MONOCHROME1 inverted.

    The transforms are per value, so running them over at most 65,536 values replaces float math
    over ~7 MP pixels. With a VOI, 0 and 255 are the ends of its output over every storable
    value, which for a window inside that range are the window's own floor and ceiling.
    """
    first, last = _stored_range(dataset)
    presented = apply_modality_lut(np.arange(first, last + 1), dataset)
    if _has_voi(dataset):
        presented = np.asarray(apply_voi_lut(presented, dataset), dtype=np.float64)
        low, high = presented.min(), presented.max()
    else:
        presented = np.asarray(presented, dtype=np.float64)
        in_image = presented[lowest - first : highest - first + 1]
        low, high = in_image.min(), in_image.max()
    if high > low:
        scaled = np.clip(np.rint((presented - low) * (255.0 / (high - low))), 0, 255)
    else:
        scaled = np.zeros_like(presented)
    table = scaled.astype(np.uint8)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        table = 255 - table
    return table


def _stored_values(dataset: Dataset) -> np.ndarray:
    """The decoded pixel data, for native syntaxes a read-only view of the file's bytes."""
    # A copy and the unused-bits correction would each cost a pass over ~7 MP; the correction
    # is only needed when the unused high bits actually hold something (PS3.5 8.1.1).
    dataset.pixel_array_options(view_only=True, correct_unused_bits=False)
    stored = dataset.pixel_array
    first, last = _stored_range(dataset)
    if stored.ndim == 2 and not first <= stored.min() <= stored.max() <= last:
        unused = stored.itemsize * 8 - int(dataset.BitsStored)
        # Shifting out and back clears (unsigned) or sign-extends (signed) the unused bits.
        stored = (stored << unused) >> unused
    return stored


def _decode_dicom(path: str, longest_side: int) -> _ShrunkImage:
    dataset = _open_dicom(path)
    if "PixelData" not in dataset:
        raise _Rejected("no pixel data: the file has no (7FE0,0010) Pixel Data element")
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise _Rejected("no (0002,0010) Transfer Syntax UID in the file meta information")
    _require_decoder(syntax)
    photometric = dataset.get("PhotometricInterpretation")
    if photometric not in _MONOCHROME:
        raise _Rejected(
            f"(0028,0004) Photometric Interpretation is {photometric!r}: "
            "expected MONOCHROME1 or MONOCHROME2"
        )
    try:
        stored = _stored_values(dataset)
    except Exception as error:
        raise _Rejected(
            f"undecodable pixel data ({syntax.name}): {type(error).__name__}: {error}"
        ) from error
    if stored.ndim != 2:
        raise _Rejected(f"pixel data has shape {stored.shape}: expected a single grayscale frame")
    table = _display_table(dataset, int(stored.min()), int(stored.max()))
    first, _ = _stored_range(dataset)
    # Index arithmetic must not wrap around in the stored (16-bit) dtype.
    offsets = stored if first == 0 else stored.astype(np.int32) - first
    # Every offset is inside the table; "clip" skips the bounds checks (~30% faster).
    image = Image.fromarray(np.take(table, offsets, mode="clip"))
    _shrink(image, longest_side)
    rows, cols = stored.shape
    view = str(dataset.get("ViewPosition") or "").strip()
    return _ShrunkImage(
        image=image,
        rows=rows,
        cols=cols,
        photometric_interpretation=photometric,
        transfer_syntax_uid=str(syntax),
        bits_stored=int(dataset.BitsStored),
        view_position=view or None,
    )


def _decode_jpeg(path: str, longest_side: int) -> _ShrunkImage:
    try:
        image = Image.open(path)
    except UnidentifiedImageError as error:
        raise _Rejected("not a JPEG file: no image format recognised in its bytes") from error
    with image:
        if image.format != "JPEG":
            raise _Rejected(f"not a JPEG file: it holds {image.format} data")
        cols, rows = image.size
        try:
            _shrink(image, longest_side)
            # Pillow decodes lazily: a damaged stream only fails here.
            return _ShrunkImage(image=image.convert("L"), rows=rows, cols=cols)
        except OSError as error:
            raise _Rejected(f"corrupt JPEG: {error}") from error


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _stored_png_path(store_root: str, image_sha256: str) -> Path:
    """Where the PNG with this content hash lives: `<store>/<sha[:2]>/<sha>.png`."""
    return Path(store_root, image_sha256[:2], f"{image_sha256}.png")


def _store_png(png: bytes, store_root: str) -> tuple[Path, str]:
    digest = content_hash(png)
    path = _stored_png_path(store_root, digest)
    # Same hash, same bytes: an existing file is already this image.
    if not path.exists():
        with atomic_target(path) as tmp:
            tmp.write_bytes(png)
    return path, digest


def preprocess_image(job: ImageJob, config: PreprocessConfig) -> ImageResult | ImageReject:
    """Decode one DICOM (or `.jpg`/`.jpeg`) source, make it display-ready and store it as a PNG.

    Never raises for a bad file: any failure is returned as an `ImageReject`.
    """
    try:
        return _preprocess(job, config)
    except _Rejected as rejected:
        reason = str(rejected)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the batch
        reason = f"unexpected {type(error).__name__}: {error}"
    return ImageReject(job.source_path, job.dicom_id, job.study_id, reason)


def _preprocess(job: ImageJob, config: PreprocessConfig) -> ImageResult:
    try:
        # Hashed from the file, not from bytes held for decoding: streaming spares a ~15 MB copy.
        source_sha256 = sha256_file(Path(job.source_path))
    except FileNotFoundError as error:
        raise _Rejected("file missing") from error
    except OSError as error:
        raise _Rejected(f"unreadable file: {error.strerror or error}") from error
    decode = _decode_jpeg if job.source_path.lower().endswith(_JPEG_SUFFIXES) else _decode_dicom
    shrunk = decode(job.source_path, config.longest_side)
    # Equalised after shrinking: the histogram it flattens is the one the model sees.
    image = ImageOps.equalize(shrunk.image) if config.equalize else shrunk.image
    path, image_sha256 = _store_png(_encode_png(image), config.store_root)
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


def _reusable(job: ImageJob, config: PreprocessConfig, previous: ImageResult) -> ImageResult | None:
    """`previous`, re-pointed at this job and store, if its PNG is still valid for the source."""
    if previous.recipe != config.recipe:
        return None
    stored = _stored_png_path(config.store_root, previous.image_sha256)
    if not stored.exists():
        return None
    try:
        # Hashing a 15 MB DICOM takes ~9 ms, preprocessing it ~50 ms.
        if sha256_file(Path(job.source_path)) != previous.source_sha256:
            return None
    except OSError:
        return None
    return replace(
        previous,
        study_id=job.study_id,
        subject_id=job.subject_id,
        source_path=job.source_path,
        image_path=str(stored),
    )


def _preprocess_or_reuse(
    job: ImageJob, config: PreprocessConfig, previous: ImageResult | None
) -> ImageResult | ImageReject:
    if previous is not None and (reused := _reusable(job, config, previous)) is not None:
        return reused
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


IMAGE_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ImageResult))


def _read_record(path: Path) -> dict[str, ImageResult]:
    try:
        rows = pd.read_parquet(path, columns=list(IMAGE_RESULT_FIELDS))
    except (OSError, ValueError, pa.ArrowException):
        return {}
    rows = rows.astype(object).where(rows.notna(), None)
    return {row["dicom_id"]: ImageResult(**row) for row in rows.to_dict("records")}


def _shard_records(store_root: Path) -> list[Path]:
    return sorted(Path(store_root, SHARD_RECORDS_DIRNAME).glob("*.parquet"))


def read_decode_cache(store_root: Path) -> dict[str, ImageResult]:
    """The store's record of earlier results by dicom_id, for `preprocess_images(cache=...)`.

    It belongs to the PNG store, not to the `cxr_images` table, so a run that writes only some
    tables still leaves the next run a complete cache. Shard runs' records
    (`write_shard_record`) count too; where two records name one image, the one written last
    wins, as the latest decode of it. A missing or unreadable record is an empty cache:
    everything is decoded again, nothing is wrong.
    """
    paths = [Path(store_root, DECODE_CACHE_NAME), *_shard_records(store_root)]
    written = {path: path.stat().st_mtime_ns for path in paths if path.exists()}
    cache: dict[str, ImageResult] = {}
    for path in sorted(written, key=written.__getitem__):
        cache.update(_read_record(path))
    return cache


def _write_record(results: Sequence[ImageResult], path: Path) -> None:
    frame = pd.DataFrame([dataclasses.asdict(r) for r in results], columns=list(IMAGE_RESULT_FIELDS))
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path)


def _pixels_key(result: ImageResult) -> tuple[str, str, str, str]:
    return result.dicom_id, result.source_sha256, result.image_sha256, result.recipe


def same_pixels(cached: ImageResult | None, result: ImageResult) -> bool:
    """Whether `result` is the cached PNG of the same source (a moved data root changes only
    the paths), i.e. it was not decoded again."""
    return cached is not None and _pixels_key(cached) == _pixels_key(result)


def write_decode_cache(store_root: Path, results: Sequence[ImageResult]) -> None:
    """Record `results` as the store's decode cache (atomically, replacing the earlier one).

    A shard record every image of which `results` now holds with the same pixels is folded in
    and removed; one with anything else (a shard run that finished meanwhile, an image no
    longer listed) stays for the next run to read.
    """
    _write_record(results, Path(store_root, DECODE_CACHE_NAME))
    recorded = {_pixels_key(result) for result in results}
    for path in _shard_records(store_root):
        if all(_pixels_key(r) in recorded for r in _read_record(path).values()):
            path.unlink(missing_ok=True)


def write_shard_record(store_root: Path, shard: str, results: Sequence[ImageResult]) -> Path:
    """Record one shard run's results beside the decode cache, in a file of its own
    (`decoded-shards/<shard>.parquet`), so shard runs never write the same file at once; the
    next unpartitioned run reads them with the cache and folds them into it."""
    path = Path(store_root, SHARD_RECORDS_DIRNAME, f"{shard}.parquet")
    _write_record(results, path)
    return path
