"""Metadata values a user looks at first in the Dagster UI: samples, counts, pictures."""

from __future__ import annotations

import math

import dagster as dg
import pandas as pd


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
    return dg.MetadataValue.table(records=records)
