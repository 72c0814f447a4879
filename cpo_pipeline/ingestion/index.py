"""Reading MIMIC-CXR index tables: required columns, id validation, rejects per bad row."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cpo_pipeline import layout

ID_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "subject_id": (layout.SUBJECT_ID_PATTERN, "8 digits starting with 1"),
    "study_id": (layout.STUDY_ID_PATTERN, "8 digits starting with 5"),
    "dicom_id": (layout.DICOM_ID_PATTERN, "40 hex characters in 5 dash-separated groups of 8"),
}


@dataclass(frozen=True)
class Reject:
    """One input that could not be used, and why. `path` names the file (with the row when the
    input is a table row)."""

    stage: str
    path: str
    reason: str
    subject_id: int | None = None
    study_id: int | None = None
    dicom_id: str | None = None


class IndexTableError(ValueError):
    """A whole index table is unusable (missing, unreadable, or lacking required columns)."""


def read_index_table(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """All columns as strings (ids keep their digits, blanks stay ""); extra columns are kept."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as error:  # pandas raises many types for a corrupt gzip or CSV
        raise IndexTableError(f"{path}: cannot read as CSV: {error}") from error
    frame.columns = [column.strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise IndexTableError(
            f"{path}: missing required column(s) {missing}; found {list(frame.columns)}"
        )
    return frame


def validate_ids(
    frame: pd.DataFrame, path: Path, stage: str, id_columns: Sequence[str]
) -> tuple[pd.DataFrame, list[Reject]]:
    """Keep rows whose ids match the MIMIC formats (converted to int64 / str); reject the rest."""
    bad = pd.Series(False, index=frame.index)
    reasons = pd.Series("", index=frame.index)
    for column in id_columns:
        pattern, expected = ID_FORMATS[column]
        values = frame[column].str.strip()
        invalid = ~values.str.fullmatch(pattern.pattern) & ~bad
        reasons[invalid] = f"malformed {column} " + values[invalid].map(repr) + f" (expected {expected})"
        bad |= invalid
    rejects = [
        Reject(
            stage=stage,
            # Line numbers count the header as line 1, as an editor shows them.
            path=f"{path}:{int(row) + 2}",
            reason=reasons[row],
            **_parsable_ids(frame.loc[row], id_columns),
        )
        for row in frame.index[bad]
    ]
    good = frame.loc[~bad].copy()
    for column in id_columns:
        good[column] = good[column].str.strip()
        if column != "dicom_id":
            good[column] = good[column].astype("int64")
    return good, rejects


def _parsable_ids(row: pd.Series, id_columns: Sequence[str]) -> dict[str, object]:
    ids: dict[str, object] = {}
    for column in id_columns:
        value = str(row[column]).strip()
        pattern, _ = ID_FORMATS[column]
        if pattern.fullmatch(value):
            ids[column] = value if column == "dicom_id" else int(value)
    return ids


def rejects_frame(rejects: Sequence[Reject]) -> pd.DataFrame:
    columns = ["stage", "path", "reason", "subject_id", "study_id", "dicom_id"]
    frame = pd.DataFrame([vars(r) for r in rejects], columns=columns)
    for column in ("subject_id", "study_id"):
        frame[column] = frame[column].astype("Int64")
    return frame
