"""Where preprocessed images live: 8-bit grayscale PNGs stored by the hash of their bytes, so
identical images share one file, and beside them the decode record, which source (by hash) and
recipe each PNG was made from, so an unchanged source is never decoded again.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
from PIL import Image

from cpo_pipeline.storage import atomic_target, content_hash, sha256_file, write_parquet

# Measured on RG1_UNCR at 512 px: level 4 is within 1% of level 9's size at a third of the
# default level 6's time (12 ms vs 35 ms); levels 1-3 are ~18% larger.
PNG_COMPRESS_LEVEL = 4
# Beside the PNGs: which source (by hash) and recipe each stored PNG was made from.
DECODE_CACHE_NAME = "decoded.parquet"
# Beside it: one record per shard run (`write_shard_record`), folded into it by the next full run.
SHARD_RECORDS_DIRNAME = "decoded-shards"


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


IMAGE_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ImageResult))


def _stored_png_path(store_root: str, image_sha256: str) -> Path:
    """Where the PNG with this content hash lives: `<store>/<sha[:2]>/<sha>.png`."""
    return Path(store_root, image_sha256[:2], f"{image_sha256}.png")


def store_png(image: Image.Image, store_root: str) -> tuple[Path, str]:
    """Encode `image` as a PNG and store it by its content hash; returns its path and hash."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    png = buffer.getvalue()
    digest = content_hash(png)
    path = _stored_png_path(store_root, digest)
    # Same hash, same bytes: an existing file is already this image.
    if not path.exists():
        with atomic_target(path) as tmp:
            tmp.write_bytes(png)
    return path, digest


def reusable_png(
    previous: ImageResult, source_path: str, *, recipe: str, store_root: str
) -> Path | None:
    """Where `previous`'s PNG lies in the store at `store_root`, if it is still valid for the
    source now at `source_path`: made with `recipe`, still stored, from a source whose bytes
    hash the same. None when the source must be decoded again."""
    if previous.recipe != recipe:
        return None
    stored = _stored_png_path(store_root, previous.image_sha256)
    if not stored.exists():
        return None
    try:
        # Hashing a 15 MB DICOM takes ~9 ms, preprocessing it ~50 ms.
        if sha256_file(Path(source_path)) != previous.source_sha256:
            return None
    except OSError:
        return None
    return stored


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
    frame = pd.DataFrame(
        [dataclasses.asdict(r) for r in results], columns=list(IMAGE_RESULT_FIELDS)
    )
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
