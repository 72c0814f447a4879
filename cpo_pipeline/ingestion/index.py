"""Reading MIMIC-CXR index tables: required columns, id validation, rejects per bad row."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cpo_pipeline import layout
from cpo_pipeline.ingestion.source import MimicSource

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


_IMAGE_IDS = ("dicom_id", "subject_id", "study_id")
_IMAGE_INDEX_COLUMNS = ("dicom_id", "subject_id", "study_id", "source_path", "ViewPosition",
                        "StudyDate", "StudyTime", "split")


def read_table(
    source: MimicSource, name: str, required: Sequence[str], id_columns: Sequence[str]
) -> tuple[pd.DataFrame | None, list[Reject]]:
    """Index table `name` from the source with validated ids; (None, []) when it is absent."""
    path = source.find_table(name)
    if path is None:
        return None, []
    return validate_ids(read_index_table(path, required), path, f"index:{name}", id_columns)


def require_table(source: MimicSource, name: str) -> Path:
    """Index table `name` (gzipped or not) from either root, or an error naming the roots."""
    path = source.find_table(name)
    if path is None:
        raise IndexTableError(
            f"{name}(.gz) not found in {[str(r) for r in source.roots]}: it ships with the "
            "MIMIC-CXR-JPG release; put it in MIMIC_CXR_ROOT or MIMIC_CXR_JPG_ROOT"
        )
    return path


def _reject_rows(frame: pd.DataFrame, mask: pd.Series, stage: str, path: str,
                 reasons: pd.Series | str) -> list[Reject]:
    reasons = reasons if isinstance(reasons, pd.Series) else pd.Series(reasons, index=frame.index)
    return [
        Reject(stage, path, reasons[index], int(row.subject_id), int(row.study_id), row.dicom_id)
        for index, row in zip(frame.index[mask], frame.loc[mask].itertuples(), strict=True)
    ]


def _disagreement(left: pd.DataFrame, right: pd.DataFrame, left_name: str,
                  right_name: str) -> tuple[pd.Series, pd.Series]:
    """Rows whose subject or study id differ between two tables joined on dicom_id."""
    differs = (left["subject_id"] != right["subject_id"]) | (left["study_id"] != right["study_id"])
    # A left join makes the other side's ids float; print them as the integers they are.
    shown = {side: frame.astype("Int64").astype(str) for side, frame in
             (("left", left), ("right", right))}
    reasons = (
        f"ids disagree between files: {left_name} says subject " + shown["left"]["subject_id"]
        + " study " + shown["left"]["study_id"] + f", {right_name} says subject "
        + shown["right"]["subject_id"] + " study " + shown["right"]["study_id"]
    )
    return differs.fillna(False), reasons


def _join_by_image(
    listed: pd.DataFrame, table: pd.DataFrame, table_path: Path, listed_name: str, stage: str,
    missing_reason: str, valid: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> tuple[pd.DataFrame, list[Reject]]:
    """`listed` images joined with `table` by dicom_id; an image with no (valid) row there, or
    whose subject or study id the two files disagree on, is rejected."""
    joined = listed.merge(table.drop_duplicates("dicom_id"), on="dicom_id", how="left",
                          suffixes=("", "_other"))
    absent = joined["subject_id_other"].isna()
    if valid is not None:
        absent |= ~valid(joined)
    rejects = _reject_rows(joined, absent, stage, str(table_path), missing_reason)
    other_ids = joined[["subject_id_other", "study_id_other"]].set_axis(
        ["subject_id", "study_id"], axis=1)
    differs, reasons = _disagreement(joined[["subject_id", "study_id"]], other_ids, listed_name,
                                     table_path.name)
    differs &= ~absent
    rejects += _reject_rows(joined, differs, stage, str(table_path), reasons)
    kept = joined.loc[~absent & ~differs].drop(columns=["subject_id_other", "study_id_other"])
    return kept, rejects


def read_image_index(source: MimicSource) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Reject]]:
    """Every usable listed image with its view, date, split and absolute source path; the
    study list (report paths) when present; and a reject for every row that cannot be used.

    With a DICOM root and `cxr-record-list`, images are the record list's `.dcm` files; otherwise
    (the JPG release) they are the metadata table's images as `.jpg` under the JPG root.
    """
    metadata_path = require_table(source, layout.METADATA)
    split_path = require_table(source, layout.SPLIT)
    metadata, rejects = read_table(source, layout.METADATA, layout.METADATA_COLUMNS, _IMAGE_IDS)
    split, split_rejects = read_table(source, layout.SPLIT, layout.SPLIT_COLUMNS, _IMAGE_IDS)
    records, record_rejects = read_table(
        source, layout.RECORD_LIST, layout.RECORD_LIST_COLUMNS, _IMAGE_IDS
    )
    study_list, study_rejects = read_table(
        source, layout.STUDY_LIST, layout.STUDY_LIST_COLUMNS, ("subject_id", "study_id")
    )
    rejects += split_rejects + record_rejects + study_rejects

    if source.dicom_root is not None and records is not None:
        listed_name, root = str(source.find_table(layout.RECORD_LIST)), source.dicom_root
        listed = records.drop_duplicates("dicom_id")
        expected = ("files/p" + listed["subject_id"].astype(str).str[:2] + "/p"
                    + listed["subject_id"].astype(str) + "/s" + listed["study_id"].astype(str)
                    + "/" + listed["dicom_id"] + ".dcm")
        bad_path = listed["path"].str.strip() != expected
        rejects += _reject_rows(listed, bad_path, "index:record-list", listed_name,
                                "path " + listed["path"].map(repr) + " disagrees with its ids")
        listed = listed.loc[~bad_path]
    else:
        if source.jpg_root is None:
            raise IndexTableError(
                f"no {layout.RECORD_LIST}(.gz) in the DICOM root and no JPG root: set "
                "MIMIC_CXR_ROOT to the DICOM release or MIMIC_CXR_JPG_ROOT to the JPG release"
            )
        listed_name, root = str(metadata_path), source.jpg_root
        listed = metadata[list(_IMAGE_IDS)].drop_duplicates("dicom_id")
        listed = listed.assign(path=[
            layout.image_relpath(s, t, d, "jpg")
            for s, t, d in zip(listed["subject_id"], listed["study_id"], listed["dicom_id"])
        ])

    joined, metadata_rejects = _join_by_image(
        listed, metadata, metadata_path, Path(listed_name).name, "index:metadata",
        "image has no row in the metadata table")
    images, split_rejects = _join_by_image(
        joined, split, split_path, Path(listed_name).name, "index:split",
        "image has no valid split row (train, validate or test)",
        valid=lambda frame: frame["split"].isin(layout.SPLITS))
    rejects += metadata_rejects + split_rejects
    images["source_path"] = f"{root}/" + images["path"].str.strip()
    return images[list(_IMAGE_INDEX_COLUMNS)].reset_index(drop=True), study_list, rejects
