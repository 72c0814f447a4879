"""Reading MIMIC-CXR index tables: required columns, id validation, rejects per bad row."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cpo_pipeline import mimic_layout, schemas
from cpo_pipeline.ingestion.source import MimicSource

ID_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "subject_id": (mimic_layout.SUBJECT_ID_PATTERN, "8 digits starting with 1"),
    "study_id": (mimic_layout.STUDY_ID_PATTERN, "8 digits starting with 5"),
    "dicom_id": (mimic_layout.DICOM_ID_PATTERN, "40 hex characters in 5 dash-separated groups of 8"),
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


def read_index_table(
    path: Path, required: Sequence[str], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """All columns as strings (ids keep their digits, blanks stay ""); extra columns are kept.
    With `columns`, only those are read (the required ones must all be there still)."""
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except Exception as error:  # pandas raises many types for a corrupt gzip or CSV
        raise _unreadable(path, error) from error
    names = [column.strip() for column in header]
    missing = [column for column in required if column not in names]
    if missing:
        raise IndexTableError(f"{path}: missing required column(s) {missing}; found {names}")
    wanted = [raw for raw, name in zip(header, names, strict=True)
              if columns is None or name in columns]
    try:
        frame = _read_csv_as_strings(path, header, wanted)
    except Exception as error:
        raise _unreadable(path, error) from error
    frame.columns = [column.strip() for column in frame.columns]
    return frame


def _unreadable(path: Path, error: Exception) -> IndexTableError:
    return IndexTableError(f"{path}: cannot read as CSV: {error}")


def _read_csv_as_strings(path: Path, header: list[str], wanted: list[str]) -> pd.DataFrame:
    """Columns `wanted` of the CSV as pandas reads them with `dtype=str` and no NA parsing,
    parsed by pyarrow (3-5x faster). `header` is pandas' naming of the columns (a BOM, a
    repeated or empty name). Where pyarrow's stricter reader refuses the file (a short row,
    which pandas fills with blanks, bytes that are not UTF-8, a damaged gzip), pandas reads
    it, so the result or the error is pandas' own."""
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(wanted, pa.string()), include_columns=wanted,
                null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowException, OSError):
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                           usecols=None if wanted == header else wanted)
    # One chunk per column: pandas takes rows out of a chunked column several times slower.
    return table.combine_chunks().to_pandas()


def validate_ids(
    frame: pd.DataFrame, path: Path, stage: str, id_columns: Sequence[str]
) -> tuple[pd.DataFrame, list[Reject]]:
    """Keep rows whose ids match the MIMIC formats (converted to int64 / str); reject the rest.

    The kept rows keep their index labels (the row's position in the file), so later rejects
    can still name the line."""
    bad = np.zeros(len(frame), dtype=bool)
    reasons: dict[int, str] = {}
    ids: dict[str, pd.Series] = {}
    for column in id_columns:
        pattern, expected = ID_FORMATS[column]
        values, matches = _stripped_matches(frame[column], pattern)
        for position in np.flatnonzero(~matches & ~bad):
            reasons[position] = f"malformed {column} {values.iat[position]!r} (expected {expected})"
        bad |= ~matches
        ids[column] = values
    rejects = [
        Reject(
            stage=stage,
            path=f"{path}:{line_of(frame.index[position])}",
            reason=reasons[position],
            **_parsable_ids(frame.iloc[position], id_columns),
        )
        for position in np.flatnonzero(bad)
    ]
    good = frame.loc[~bad] if bad.any() else frame
    return good.assign(**{
        column: values[~bad] if column == "dicom_id" else _as_int64(values[~bad])
        for column, values in ids.items()
    }), rejects


def line_of(row: int) -> int:
    """The file line of table row `row` (its original position), counting the header as line 1,
    as an editor shows them."""
    return int(row) + 2


def _stripped_matches(values: pd.Series, pattern: re.Pattern[str]) -> tuple[pd.Series, np.ndarray]:
    """`values` stripped of surrounding whitespace, and whether each matches `pattern` whole.

    A value that matches as read has no whitespace to strip, so only the others are stripped
    and tried again (stripping every value copies the whole column)."""
    matches = values.str.fullmatch(pattern.pattern).to_numpy(dtype=bool, copy=True)
    if matches.all():
        return values, matches
    retried = values[~matches].str.strip()
    values = values.copy()
    values[~matches] = retried
    matches[~matches] = retried.str.fullmatch(pattern.pattern).to_numpy(dtype=bool)
    return values, matches


def _as_int64(values: pd.Series) -> pd.Series:
    # pyarrow's cast is ~10x faster than pandas' astype from string.
    return pd.Series(pc.cast(pa.array(values), pa.int64()).to_numpy(), index=values.index)


def _parsable_ids(row: pd.Series, id_columns: Sequence[str]) -> dict[str, object]:
    ids: dict[str, object] = {}
    for column in id_columns:
        value = str(row[column]).strip()
        pattern, _ = ID_FORMATS[column]
        if pattern.fullmatch(value):
            ids[column] = value if column == "dicom_id" else int(value)
    return ids


def rejects_frame(rejects: Sequence[Reject]) -> pd.DataFrame:
    frame = pd.DataFrame([vars(r) for r in rejects], columns=schemas.INGEST_REJECTS.names)
    for column in ("subject_id", "study_id"):
        frame[column] = frame[column].astype("Int64")
    return frame


_IMAGE_IDS = ("dicom_id", "subject_id", "study_id")
_IMAGE_INDEX_COLUMNS = ("dicom_id", "subject_id", "study_id", "source_path", "ViewPosition",
                        "StudyDate", "StudyTime", "split")
# What the index takes from the metadata table; its other columns are only checked to be there.
_METADATA_USED = (*_IMAGE_IDS, "ViewPosition", "StudyDate", "StudyTime")


def read_table(
    source: MimicSource, name: str, required: Sequence[str], id_columns: Sequence[str],
    columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame | None, list[Reject]]:
    """Index table `name` from the source with validated ids (only `columns`, when given);
    (None, []) when it is absent."""
    path = source.find_table(name)
    if path is None:
        return None, []
    table = read_index_table(path, required, columns)
    return validate_ids(table, path, f"index:{name}", id_columns)


def require_table(source: MimicSource, name: str) -> Path:
    """Index table `name` (gzipped or not) from either root, or an error naming the roots."""
    path = source.find_table(name)
    if path is None:
        raise IndexTableError(
            f"{name}(.gz) not found in {[str(r) for r in source.roots]}: it ships with the "
            "MIMIC-CXR-JPG release; put it in MIMIC_CXR_ROOT or MIMIC_CXR_JPG_ROOT"
        )
    return path


def image_relpaths(images: pd.DataFrame, extension: str) -> pd.Series:
    """`mimic_layout.image_relpath` of every row of `images` (int ids, dicom_id), built column-wise:
    a Python call per row costs more than the whole join."""
    subject, study, dicom = (pc.cast(pa.array(images[column]), pa.string())
                             for column in ("subject_id", "study_id", "dicom_id"))
    relpaths = pc.binary_join_element_wise(
        "files/p", pc.utf8_slice_codeunits(subject, 0, 2), "/p", subject, "/s", study, "/",
        dicom, f".{extension}", "")
    return relpaths.to_pandas().set_axis(images.index)


def _reject_rows(frame: pd.DataFrame, positions: np.ndarray, stage: str, paths: Sequence[str],
                 reasons: Sequence[str]) -> list[Reject]:
    """A reject for each row of `frame` at `positions`, with its path and reason (one each)."""
    rows = frame[["subject_id", "study_id", "dicom_id"]].iloc[positions].itertuples(index=False)
    return [Reject(stage, path, reason, int(row.subject_id), int(row.study_id), row.dicom_id)
            for row, path, reason in zip(rows, paths, reasons, strict=True)]


def _lines(path: Path, rows: pd.Index) -> list[str]:
    """`file:line` of each table row in `rows` (index labels, i.e. file positions)."""
    return [f"{path}:{line_of(row)}" for row in rows]


def _join_by_image(
    listed: pd.DataFrame, listed_path: Path, table: pd.DataFrame, table_path: Path, stage: str,
    missing_reason: str, refusals: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> tuple[pd.DataFrame, list[Reject]]:
    """`listed` images with the other columns of `table`'s first row of the same dicom_id.

    Rejected: an image with no row there (at its line of the listed file); one whose row
    `refusals` gives a reason for (it returns the reasons of the refused rows of `table`,
    indexed like it), and one whose row differs from the listed one in subject or study id
    (both at the line of `table`, the row that conflicts). Both frames carry their rows' file
    positions as index labels (see `validate_ids`).
    """
    at = pc.fill_null(pc.index_in(pa.array(listed["dicom_id"]),
                                  value_set=pa.array(table["dicom_id"])), -1).to_numpy()
    missing = at < 0
    refused = np.zeros(len(table), dtype=bool)
    reasons = pd.Series(dtype=object)
    if refusals is not None:
        reasons = refusals(table)
        refused[table.index.get_indexer(reasons.index)] = True
    unusable = missing.copy()
    unusable[~missing] = refused[at[~missing]]
    paths, why = [], []
    for row, position in zip(listed.index[unusable], at[unusable], strict=True):
        if position < 0:
            paths.append(f"{listed_path}:{line_of(row)}")
            why.append(missing_reason)
        else:
            paths.append(f"{table_path}:{line_of(table.index[position])}")
            why.append(reasons[table.index[position]])
    rejects = _reject_rows(listed, np.flatnonzero(unusable), stage, paths, why)

    found = np.flatnonzero(~unusable)
    listed_ids = listed[["subject_id", "study_id"]].to_numpy()[found]
    table_ids = table[["subject_id", "study_id"]].to_numpy()[at[found]]
    differ = (listed_ids != table_ids).any(axis=1)
    rejects += _reject_rows(
        listed, found[differ], stage, _lines(table_path, table.index[at[found[differ]]]),
        [f"ids disagree between files: {listed_path.name}:{line_of(row)} says subject "
         f"{listed_subject} study {listed_study}, {table_path.name} says subject "
         f"{table_subject} study {table_study}"
         for row, (listed_subject, listed_study), (table_subject, table_study) in zip(
             listed.index[found[differ]], listed_ids[differ], table_ids[differ], strict=True)])

    kept = found[~differ]
    other_columns = table.drop(columns=list(_IMAGE_IDS)).iloc[at[kept]]
    joined = pd.concat([listed.iloc[kept], other_columns.set_axis(listed.index[kept])], axis=1)
    return joined, rejects


def _first_row_per_image(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame.drop_duplicates("dicom_id")`, without copying a frame that has no repeats."""
    repeated = frame["dicom_id"].duplicated().to_numpy()
    return frame.loc[~repeated] if repeated.any() else frame


def _invalid_splits(split: pd.DataFrame) -> pd.Series:
    """Why each split row whose split is not train, validate or test cannot be used."""
    values = split.loc[~split["split"].isin(mimic_layout.SPLITS), "split"]
    return ("image has no valid split row: split " + values.map(repr)
            + " (expected train, validate or test)")


def read_image_index(source: MimicSource) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Reject]]:
    """Every usable listed image with its view, date, split and absolute source path; the
    study list (report paths) when present; and a reject for every row that cannot be used.

    With a DICOM root and `cxr-record-list`, images are the record list's `.dcm` files; otherwise
    (the JPG release) they are the metadata table's images as `.jpg` under the JPG root.
    """
    metadata_path = require_table(source, mimic_layout.METADATA)
    split_path = require_table(source, mimic_layout.SPLIT)
    # Read side by side (gzip inflates a stream on one core), and only the columns the index
    # uses, so that no two tables share a column but the ids.
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = [pool.submit(read_table, source, *table) for table in (
            (mimic_layout.METADATA, mimic_layout.METADATA_COLUMNS, _IMAGE_IDS, _METADATA_USED),
            (mimic_layout.SPLIT, mimic_layout.SPLIT_COLUMNS, _IMAGE_IDS, mimic_layout.SPLIT_COLUMNS),
            (mimic_layout.RECORD_LIST, mimic_layout.RECORD_LIST_COLUMNS, _IMAGE_IDS,
             mimic_layout.RECORD_LIST_COLUMNS),
            (mimic_layout.STUDY_LIST, mimic_layout.STUDY_LIST_COLUMNS, ("subject_id", "study_id")),
        )]
        (metadata, rejects), (split, split_rejects), (records, record_rejects), (
            study_list, study_rejects) = (read.result() for read in reads)
    rejects += split_rejects + record_rejects + study_rejects

    if source.dicom_root is not None and records is not None:
        listed_path, root = source.find_table(mimic_layout.RECORD_LIST), source.dicom_root
        listed = _first_row_per_image(records)
        bad_path = listed["path"].str.strip() != image_relpaths(listed, "dcm")
        bad = np.flatnonzero(bad_path)
        rejects += _reject_rows(
            listed, bad, "index:record-list", _lines(listed_path, listed.index[bad]),
            [f"path {path!r} disagrees with its ids" for path in listed["path"].iloc[bad]])
        listed = listed.loc[~bad_path]
    else:
        if source.jpg_root is None:
            raise IndexTableError(
                f"no {mimic_layout.RECORD_LIST}(.gz) in the DICOM root and no JPG root: set "
                "MIMIC_CXR_ROOT to the DICOM release or MIMIC_CXR_JPG_ROOT to the JPG release"
            )
        listed_path, root = metadata_path, source.jpg_root
        listed = _first_row_per_image(metadata[list(_IMAGE_IDS)])
        listed = listed.assign(path=image_relpaths(listed, "jpg"))

    joined, metadata_rejects = _join_by_image(
        listed, listed_path, metadata, metadata_path, "index:metadata",
        f"image has no row in the metadata table ({metadata_path})")
    images, split_rejects = _join_by_image(
        joined, listed_path, split, split_path, "index:split",
        f"image has no valid split row: no row in {split_path}", _invalid_splits)
    rejects += metadata_rejects + split_rejects
    images["source_path"] = f"{root}/" + images["path"].str.strip()
    return images[list(_IMAGE_INDEX_COLUMNS)].reset_index(drop=True), study_list, rejects
