"""The 14 CheXpert observations per study: the automatic labellers' tables and the radiologists'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cpo_pipeline import mimic_layout, schemas
from cpo_pipeline.ingestion.index import (
    IndexTableError,
    Reject,
    line_of,
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
LABEL_TABLES = {"chexpert": mimic_layout.CHEXPERT, "negbio": mimic_layout.NEGBIO}
TEST_SET_LABEL_SOURCE = "radiologist-test-set"

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
_LABEL_FORMS = pa.array(list(_LABEL_VALUES))
_LABEL_FLOATS = np.array([*_LABEL_VALUES.values(), math.nan])  # the last for a malformed cell
# The 2.1.0 radiologist test set is reported to name Lung Opacity this way.
_TEST_SET_COLUMN_NAMES = {"Airspace Opacity": "Lung Opacity"}


def read_labels(
    source: MimicSource, source_name: str = "chexpert"
) -> tuple[pd.DataFrame, list[Reject]]:
    """The CheXpert or NegBio labeller's table (`schemas.CXR_LABELS`; labels float, blank NaN).

    A missing table raises `IndexTableError`: every later stage needs labels. Rows with a
    malformed id, and repeated study rows after the first, are rejected. A malformed label
    value is rejected alone: its cell is left blank and the row's other labels are kept (a
    dropped row would read as a study with no finding). "No Finding" is only ever 1.0 or blank
    in the real tables; 0.0 and -1.0 are kept as read.
    """
    if source_name not in LABEL_TABLES:
        raise ValueError(
            f"unknown label source {source_name!r}; expected one of {list(LABEL_TABLES)}"
        )
    path = require_table(source, LABEL_TABLES[source_name])
    frame = read_index_table(path, mimic_layout.LABEL_COLUMNS)
    return _parse_labels(frame, path, ("subject_id", "study_id"), source_name)


def read_test_set_labels(source: MimicSource) -> tuple[pd.DataFrame, list[Reject]]:
    """The radiologists' labels of the test studies (2.1.0), in the same columns as `read_labels`.

    The file has no subject_id column, so subject_id is null (nullable Int64): study ids are
    unique across patients, so joins go by study_id. Should a copy carry subject_id, it is
    validated and kept. `Airspace Opacity` is read as Lung Opacity.
    """
    path = require_table(source, mimic_layout.TEST_SET_LABELED)
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
    """Valid ids, first row per study, label cells as floats; a reject for every other row and
    for every malformed cell (left blank)."""
    frame, rejects = validate_ids(frame, path, STAGE, id_columns)
    first_rows = frame.index.to_series().groupby(frame["study_id"]).transform("first")
    repeated = frame["study_id"].duplicated(keep="first")
    repeat_rejects = [
        _row_reject(frame, path, row,
                    f"repeated row for study {frame.at[row, 'study_id']} (first at line "
                    f"{line_of(first_rows[row])}; kept that one)")
        for row in frame.index[repeated]
    ]
    frame = frame.loc[~repeated]
    values, bad_cells = {}, []
    for order, label in enumerate(CHEXPERT_LABELS):
        values[label], malformed = _label_values(frame[label])
        bad_cells += [(position, order, text) for position, text in malformed.items()]
    rejects += [
        _row_reject(frame, path, frame.index[position],
                    f"malformed label value ({CHEXPERT_LABELS[order]} {text!r}; expected 1.0, "
                    "0.0, -1.0 or blank): left blank")
        for position, order, text in sorted(bad_cells)
    ]
    labels = pd.DataFrame({
        "subject_id": frame["subject_id"] if "subject_id" in frame.columns else pd.NA,
        "study_id": frame["study_id"],
        **values,
        "label_source": label_source,
    }, index=frame.index)
    return labels[schemas.CXR_LABELS.names].reset_index(drop=True), rejects + repeat_rejects


def _label_values(cells: pd.Series) -> tuple[np.ndarray, dict[int, str]]:
    """Each cell's label value (blank NaN), and the stripped text of each malformed cell by
    position (its value is NaN too)."""
    stripped = pc.utf8_trim_whitespace(pa.array(cells, type=pa.string()))
    forms = pc.index_in(stripped, value_set=_LABEL_FORMS)
    malformed = np.flatnonzero(forms.is_null().to_numpy(zero_copy_only=False))
    values = _LABEL_FLOATS[pc.fill_null(forms, len(_LABEL_FORMS)).to_numpy()]
    return values, dict(zip(malformed, stripped.take(malformed).to_pylist(), strict=True))


def _row_reject(frame: pd.DataFrame, path: Path, row: int, reason: str) -> Reject:
    """A reject for table row `row` (its original position), with the line an editor shows."""
    subject_id = frame.at[row, "subject_id"] if "subject_id" in frame.columns else None
    return Reject(
        stage=STAGE,
        path=f"{path}:{line_of(row)}",
        reason=reason,
        subject_id=None if subject_id is None else int(subject_id),
        study_id=int(frame.at[row, "study_id"]),
    )
