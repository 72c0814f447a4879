"""The 14 CheXpert observations per study: the automatic labellers' tables and the radiologists'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cpo_pipeline import layout
from cpo_pipeline.ingestion.index import (
    IndexTableError,
    Reject,
    read_index_table,
    require_table,
    validate_ids,
)
from cpo_pipeline.ingestion.source import MimicSource
from cpo_pipeline.radiology.chexpert import (
    CHEXPERT_LABELS,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
)

STAGE = "labels"
LABEL_TABLES = {"chexpert": layout.CHEXPERT, "negbio": layout.NEGBIO}
TEST_SET_LABEL_SOURCE = "radiologist-test-set"
LABEL_TABLE_COLUMNS = (*layout.LABEL_COLUMNS, "label_source")

# The forms a label cell takes once stripped; blank means the report does not mention it.
_LABEL_VALUES = {
    "": math.nan,
    "1": LABEL_POSITIVE,
    "1.0": LABEL_POSITIVE,
    "0": LABEL_NEGATIVE,
    "0.0": LABEL_NEGATIVE,
    "-1": LABEL_UNCERTAIN,
    "-1.0": LABEL_UNCERTAIN,
}
# The 2.1.0 radiologist test set is reported to name Lung Opacity this way.
_TEST_SET_COLUMN_NAMES = {"Airspace Opacity": "Lung Opacity"}


def read_labels(
    source: MimicSource, source_name: str = "chexpert"
) -> tuple[pd.DataFrame, list[Reject]]:
    """The CheXpert or NegBio labeller's table (`LABEL_TABLE_COLUMNS`; labels float, blank NaN).

    A missing table raises `IndexTableError`: every later stage needs labels. Rows with a
    malformed id or label value, and repeated study rows after the first, are rejected.
    "No Finding" is only ever 1.0 or blank in the real tables; 0.0 and -1.0 are kept as read.
    """
    if source_name not in LABEL_TABLES:
        raise ValueError(
            f"unknown label source {source_name!r}; expected one of {list(LABEL_TABLES)}"
        )
    path = require_table(source, LABEL_TABLES[source_name])
    frame = read_index_table(path, layout.LABEL_COLUMNS)
    return _parse_labels(frame, path, ("subject_id", "study_id"), source_name)


def read_test_set_labels(source: MimicSource) -> tuple[pd.DataFrame, list[Reject]]:
    """The radiologists' labels of the test studies (2.1.0), in the same columns as `read_labels`.

    The file has no subject_id column, so subject_id is null (nullable Int64): study ids are
    unique across patients, so joins go by study_id. Should a copy carry subject_id, it is
    validated and kept. `Airspace Opacity` is read as Lung Opacity.
    """
    path = require_table(source, layout.TEST_SET_LABELED)
    frame = read_index_table(path, ("study_id",)).rename(columns=_TEST_SET_COLUMN_NAMES)
    missing = [label for label in CHEXPERT_LABELS if label not in frame.columns]
    if missing:
        raise IndexTableError(
            f"{path}: missing label column(s) {missing}; found {list(frame.columns)}"
        )
    id_columns = ("subject_id", "study_id") if "subject_id" in frame.columns else ("study_id",)
    labels, rejects = _parse_labels(frame, path, id_columns, TEST_SET_LABEL_SOURCE)
    labels["subject_id"] = labels["subject_id"].astype("Int64")
    return labels, rejects


def _parse_labels(
    frame: pd.DataFrame, path: Path, id_columns: Sequence[str], label_source: str
) -> tuple[pd.DataFrame, list[Reject]]:
    """Valid ids, label cells as floats, first row per study; a reject for every other row."""
    frame, rejects = validate_ids(frame, path, STAGE, id_columns)
    cells = frame[list(CHEXPERT_LABELS)].apply(lambda column: column.str.strip())
    malformed = ~cells.isin(list(_LABEL_VALUES))
    for row in frame.index[malformed.any(axis=1)]:
        bad = ", ".join(f"{label} {cells.at[row, label]!r}"
                        for label in CHEXPERT_LABELS if malformed.at[row, label])
        rejects.append(_row_reject(
            frame, path, row,
            f"malformed label value(s) {bad} (expected 1.0, 0.0, -1.0 or blank)",
        ))
    frame = frame.loc[~malformed.any(axis=1)]
    first_lines = frame.index.to_series().groupby(frame["study_id"]).transform("first") + 2
    repeated = frame["study_id"].duplicated(keep="first")
    rejects += [
        _row_reject(frame, path, row,
                    f"repeated row for study {frame.at[row, 'study_id']} (first at line "
                    f"{first_lines[row]}; kept that one)")
        for row in frame.index[repeated]
    ]
    frame = frame.loc[~repeated]
    labels = pd.DataFrame({
        "subject_id": frame["subject_id"] if "subject_id" in frame.columns else pd.NA,
        "study_id": frame["study_id"],
        **{label: cells.loc[frame.index, label].map(_LABEL_VALUES).astype("float64")
           for label in CHEXPERT_LABELS},
        "label_source": label_source,
    }, index=frame.index)
    return labels[list(LABEL_TABLE_COLUMNS)].reset_index(drop=True), rejects


def _row_reject(frame: pd.DataFrame, path: Path, row: int, reason: str) -> Reject:
    """A reject for table row `row` (its original position), with the line an editor shows."""
    subject_id = frame.at[row, "subject_id"] if "subject_id" in frame.columns else None
    return Reject(
        stage=STAGE,
        path=f"{path}:{row + 2}",
        reason=reason,
        subject_id=None if subject_id is None else int(subject_id),
        study_id=int(frame.at[row, "study_id"]),
    )
