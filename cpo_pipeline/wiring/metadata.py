"""Metadata values a user looks at first in the Dagster UI: samples, counts, pictures."""

from __future__ import annotations

import base64
import difflib
import math

import dagster as dg
import pandas as pd
import pyarrow as pa


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def sample_table(frame: pd.DataFrame, rows: int = 10, max_chars: int = 160) -> dg.TableMetadataValue:
    """The first `rows` rows as a Dagster table, long strings cut to `max_chars`."""
    head = frame.head(rows)
    records = []
    for row in head.itertuples(index=False):
        cells = {}
        for column, value in zip(head.columns, row, strict=True):
            cell = _cell(value)
            if isinstance(cell, str) and len(cell) > max_chars:
                cell = cell[: max_chars - 1] + "…"
            cells[str(column)] = cell
        records.append(dg.TableRecord(cells))
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c)) for c in head.columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """A table's declared Arrow schema as the UI's column list (`dagster/column_schema`)."""
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """An image shown inline in the Dagster UI (Markdown with a data URI)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def word_diff_markdown(before: str, after: str) -> str:
    """`after` against `before` word by word: deletions struck through, insertions in bold."""
    old, new = before.split(), after.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            parts.append("~~" + " ".join(old[i1:i2]) + "~~")
        if op in ("insert", "replace"):
            parts.append("**" + " ".join(new[j1:j2]) + "**")
        if op == "equal":
            parts.append(" ".join(old[i1:i2]))
    return " ".join(parts)

