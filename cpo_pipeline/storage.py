"""Where tables and artifacts live under the data root, atomic writes, and the content hash."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cpo_pipeline import data_layout

_HASH_CHUNK = 1 << 20


def content_hash(value: Any) -> str:
    """The sha256 hex digest every content key and data version in the project is made of.

    Bytes are hashed as they are, text as UTF-8, anything else as its canonical JSON (sorted
    keys, no whitespace), so equal values give equal hashes whatever their key order.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        payload = bytes(value)
    elif isinstance(value, str):
        payload = value.encode()
    else:
        payload = json.dumps(value, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False).encode()
    return hashlib.sha256(payload).hexdigest()


def sha256_file(path: Path) -> str:
    """`content_hash` of a file's bytes, streamed (sources are ~15 MB DICOMs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def table_fingerprint(table: pa.Table) -> str:
    """`content_hash` of a table (schema and values), independent of chunking and file layout."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return content_hash(sink.getvalue().to_pybytes())


def table_path(data_root: Path, asset_key: Sequence[str], partition_key: str | None = None) -> Path:
    """`<data_root>/tables/<key>/…/<name>.parquet`, or `…/<name>/<partition>.parquet` per partition."""
    base = Path(data_layout.tables(data_root), *asset_key)
    if partition_key is None:
        return base.with_name(base.name + ".parquet")
    return base / f"{partition_key}.parquet"


def previous_table(data_root: Path, asset_name: str) -> pd.DataFrame | None:
    """The table asset `asset_name` last wrote under `data_root`, or None if it never did.

    What incremental assets reuse from; a half-written file never exists (writes are atomic).
    """
    path = table_path(data_root, [asset_name])
    return pq.read_table(path).to_pandas() if path.exists() else None


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is renamed over `path`, so readers never
    see half a file and a crash leaves the old file in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` atomically (zstd-compressed Parquet)."""
    with atomic_target(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: Path) -> pa.Table:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: materialize the upstream asset first "
            "(e.g. `dagster asset materialize -m cpo_pipeline.definitions --select '*'`)"
        )
    return pq.read_table(path)
