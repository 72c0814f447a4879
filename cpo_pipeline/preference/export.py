"""A set as Hugging Face datasets on disk, one per split, in the conversational vision format
TRL's trainers take, beside its dataset card.

Layout: `<data_root>/datasets/<set>/{train,validate,test}/` (each `datasets.load_from_disk`-able;
a split without rows is not written)
and `<data_root>/datasets/<set>/README.md`. Columns: `images` (a list with the study's one
image), `prompt` (the user turn) with `chosen` and `rejected` (one assistant turn each) for a
preference set, or `messages` (user turn, assistant turn) for SFT; then the lineage columns of
the table.

Images are referenced by path, never copied into the rows: `save_to_disk` embeds the bytes of
every local file an `Image` column points at, so the column is written as the `Image` storage
struct `{bytes: null, path}` under a plain struct type and then declared `Image` in the saved
`dataset_info.json`. `load_from_disk` yields `List(Image())`, and each image is read from its
file only when a row is accessed.

`datasets` is imported inside the functions: the Dagster code server imports this module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from cpo_pipeline import data_layout, schemas
from cpo_pipeline.mimic_layout import SPLITS
from cpo_pipeline.preference.text import strings
from cpo_pipeline.storage import atomic_target

CARD_FILENAME = "README.md"
LICENSE = "PhysioNet Credentialed Health Data License 1.5.0 (MIMIC-CXR)"
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
_IMAGE_STORAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# The table's text columns; the conversational columns replace them in the dataset.
_TEXT_COLUMNS = ("prompt", "chosen", "rejected", "completion")


def _lists(values: pa.Array, per_row: int) -> pa.ListArray:
    """`values` cut into consecutive lists of `per_row` items."""
    offsets = pa.array(np.arange(0, len(values) + 1, per_row, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def _messages(roles: list[str], columns: list[pd.Series]) -> pa.ListArray:
    """Per row, one message per (role, column), in that order; Arrow throughout, so no text
    becomes a Python object."""
    rows, turns = len(columns[0]), len(columns)
    joined = pa.concat_arrays([strings(column).cast(pa.string()) for column in columns])
    # Row r's turn t sits at t * rows + r in `joined`; messages are row-major.
    order = (np.arange(turns)[None, :] * rows + np.arange(rows)[:, None]).ravel()
    content = joined.take(pa.array(order))
    role = pa.concat_arrays([pa.repeat(pa.scalar(name), rows) for name in roles])
    role = role.take(pa.array(order))
    return _lists(pa.StructArray.from_arrays([role, content], fields=list(_MESSAGE)), turns)


def conversational_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """The rows of a set's table (declared `schema`) as TRL's conversational vision columns
    plus the lineage columns, the image as the path-only `Image` storage struct."""
    lineage_schema = pa.schema([field for field in schema if field.name not in _TEXT_COLUMNS])
    lineage = pa.Table.from_pandas(frame[lineage_schema.names], schema=lineage_schema,
                                   preserve_index=False)
    paths = lineage.column("image_path").combine_chunks()
    image = pa.StructArray.from_arrays([pa.nulls(len(paths), pa.binary()), paths],
                                       fields=list(_IMAGE_STORAGE))
    columns: dict[str, pa.Array] = {"images": _lists(image, 1)}
    if "completion" in frame.columns:
        columns["messages"] = _messages(["user", "assistant"],
                                        [frame["prompt"], frame["completion"]])
    else:
        columns["prompt"] = _messages(["user"], [frame["prompt"]])
        columns["chosen"] = _messages(["assistant"], [frame["chosen"]])
        columns["rejected"] = _messages(["assistant"], [frame["rejected"]])
    for name in lineage_schema.names:
        columns[name] = lineage.column(name)
    return pa.table(columns)


@contextmanager
def _quiet_progress() -> Iterator[None]:
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def save_split(table: pa.Table, directory: Path, description: str) -> None:
    """`table` (`conversational_table`) as a `load_from_disk` directory with `images` declared
    `List(Image())`."""
    from datasets import Dataset, DatasetInfo, Features, Image, List
    from datasets.table import InMemoryTable

    features = Features.from_arrow_schema(table.schema)
    info = DatasetInfo(description=description, features=features, license=LICENSE)
    with _quiet_progress():
        Dataset(InMemoryTable(table), info=info).save_to_disk(str(directory))
    info_path = directory / "dataset_info.json"
    saved = json.loads(info_path.read_text())
    saved["features"]["images"] = Features({"images": List(Image())}).to_dict()["images"]
    info_path.write_text(json.dumps(saved, indent=2))


def _replace_directory(target: Path, build: Callable[[Path], None]) -> None:
    """Build into a sibling temp directory, then swap it in: a reader sees the old set or the
    new one, never half of one, and a crash leaves the old set in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    old = staging.with_name(staging.name.replace(".new-", ".old-"))
    try:
        build(staging)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def export_set(frame: pd.DataFrame, name: str, data_root: Path, card: str) -> dict[str, Path]:
    """Every split of set `name` (its table `frame`) that has rows, and its card; returns the
    directory of each split written. An empty split is left out: `save_to_disk` writes no shard
    for it, and `load_from_disk` cannot read that back."""
    schema = schemas.TABLES[name]
    target = data_layout.dataset(data_root, name)
    description = card.splitlines()[0].lstrip("# ") if card else name

    split = frame["split"].to_numpy()
    rows = {each: np.flatnonzero(split == each) for each in SPLITS}
    present = [each for each in SPLITS if len(rows[each])]

    def build(staging: Path) -> None:
        table = conversational_table(frame, schema)
        for each in present:
            chosen = rows[each]
            contiguous = chosen[-1] - chosen[0] + 1 == len(chosen)
            # The sets are written in split order, so a split is usually a zero-copy slice.
            part = (table.slice(int(chosen[0]), len(chosen)) if contiguous
                    else table.take(pa.array(chosen)))
            save_split(part, staging / each, description)
        with atomic_target(staging / CARD_FILENAME) as tmp:
            tmp.write_text(card)

    _replace_directory(target, build)
    return {each: target / each for each in present}
