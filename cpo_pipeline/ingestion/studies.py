"""Joining the index tables into one row per study: split, chosen frontal image, timeline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cpo_pipeline import mimic_layout, schemas
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

# PA > AP > any other non-lateral view; laterals only when the study has nothing else.
_RANKED_VIEWS = pa.array(["PA", "AP"])
_OTHER_VIEW_RANK = 2
_LATERAL_RANK = 3


def study_datetime(study_date: pd.Series, study_time: pd.Series) -> pd.Series:
    """StudyDate (YYYYMMDD) + StudyTime (HHMMSS.fff read as a number, so 08:05 is `80556.875`)."""
    # Studies share dates: parse each distinct one once.
    codes, distinct = pd.factorize(study_date.astype(str), use_na_sentinel=False)
    dates = pd.Series(pd.to_datetime(
        pd.Series(distinct).str.strip(), format="%Y%m%d", errors="coerce").to_numpy()[codes],
        index=study_date.index)
    clock = pd.to_numeric(study_time, errors="coerce").fillna(0.0)
    whole = np.floor(clock).astype("int64")
    seconds = (whole // 10_000) * 3600 + (whole // 100 % 100) * 60 + whole % 100
    return dates + pd.to_timedelta(seconds + (clock - whole), unit="s")


def view_rank(view_position: pd.Series) -> pd.Series:
    views = pc.utf8_upper(pc.utf8_trim_whitespace(pa.array(view_position, type=pa.string())))
    rank = pc.fill_null(pc.index_in(views, value_set=_RANKED_VIEWS), _OTHER_VIEW_RANK)
    lateral = pc.fill_null(pc.is_in(views, value_set=pa.array(mimic_layout.LATERAL_VIEWS)), False)
    ranks = np.where(lateral.to_numpy(zero_copy_only=False), _LATERAL_RANK, rank.to_numpy())
    return pd.Series(ranks.astype("int8"), index=view_position.index)


def _sort_order(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Positions of `frame`'s rows sorted by `columns`, nulls last, ties in frame order (as
    `sort_values` orders them; pyarrow's sort is several times faster on string keys)."""
    keys = pa.table({column: frame[column] for column in columns})
    return pc.sort_indices(keys, sort_keys=[(column, "ascending") for column in columns]).to_numpy()


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Whether each element of sorted `keys` is the first of its run of equal keys."""
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    return starts


def choose_frontal_images(images: pd.DataFrame) -> pd.DataFrame:
    """One image per study: PA > AP > other > lateral, ties broken by dicom_id for determinism.

    `images` needs study_id, dicom_id, ViewPosition. Adds `lateral_only` (no non-lateral image).
    Studies come in study_id order.
    """
    ranked = images.assign(_rank=view_rank(images["ViewPosition"]))
    order = _sort_order(ranked, ["study_id", "_rank", "dicom_id"])
    chosen = ranked.iloc[order[_group_starts(ranked["study_id"].to_numpy()[order])]]
    chosen = chosen.assign(lateral_only=chosen["_rank"] == _LATERAL_RANK)
    return chosen.drop(columns="_rank")


def visit_index(frame: pd.DataFrame) -> pd.Series:
    """0-based order of each study within its patient, by study datetime then study id."""
    order = _sort_order(frame, ["subject_id", "study_datetime", "study_id"])
    starts = np.flatnonzero(_group_starts(frame["subject_id"].to_numpy()[order]))
    sizes = np.diff(np.append(starts, len(order)))
    visits = np.empty(len(order), dtype="int32")
    visits[order] = np.arange(len(order)) - np.repeat(starts, sizes)
    return pd.Series(visits, index=frame.index)


def time_stages(frame: pd.DataFrame, n_stages: int) -> pd.Series:
    """Time-ordered stages 0..n-1 for non-stationary training, from within-patient visit order.

    MIMIC-CXR dates are shifted per patient, so only the order within a patient is meaningful:
    a study's position is the middle of its slot in the patient's timeline, (visit index + 0.5)
    / visits, and its stage the share of the timeline that slot starts in, floor(position * n),
    at most n - 1. A stage depends on nothing but the study's own patient, so a release that
    adds other patients leaves every earlier study's stage where it was (quantiles over all
    studies would move them). Stages stay roughly balanced: a patient's visits spread evenly
    over them, and a single-visit patient sits in the middle one (for an even n, the upper of
    the two middle ones).
    """
    if n_stages < 1:
        raise ValueError(f"n_stages must be >= 1, got {n_stages}")
    visits = frame.groupby("subject_id")["visit_index"].transform("max") + 1
    position = (frame["visit_index"] + 0.5) / visits
    return np.minimum(np.floor(position * n_stages), n_stages - 1).astype("int32")


def join_studies(
    images: pd.DataFrame, reports: pd.DataFrame, labels: pd.DataFrame, n_stages: int
) -> pd.DataFrame:
    """The study table every later stage reads (`schemas.CXR_STUDIES`).

    `images` holds the usable images (ids, split, ViewPosition, StudyDate, StudyTime,
    image_path); `reports` the readable reports (`findings_text`, `labelled_section`);
    `labels` one row per labelled study. A study needs an image and a findings text; its labels
    may be missing (left null), as a few real studies have no labeller row. A study dropped
    here already has its reason in the rejects of the image or report stage.
    """
    chosen = choose_frontal_images(images)
    counts = images.groupby("study_id").size().rename("n_images").astype("int32")
    studies = chosen.join(counts, on="study_id")
    text = reports[["study_id", "findings_text", "findings", "impression"]]
    studies = studies.merge(text, on="study_id", how="inner")
    studies["findings_source"] = np.select(
        [studies["findings"].notna(), studies["impression"].notna()],
        ["findings", "impression"], "last_paragraph",
    )
    label_columns = ["study_id", *CHEXPERT_LABELS, "label_source"]
    studies = studies.merge(labels[label_columns], on="study_id", how="left")
    studies["study_datetime"] = study_datetime(studies["StudyDate"], studies["StudyTime"])
    studies["view_position"] = studies["ViewPosition"].replace("", None)
    studies["visit_index"] = visit_index(studies)
    studies["stage"] = time_stages(studies, n_stages)
    studies = studies[schemas.CXR_STUDIES.names]
    return studies.iloc[_sort_order(studies, ["subject_id", "visit_index"])].reset_index(drop=True)
