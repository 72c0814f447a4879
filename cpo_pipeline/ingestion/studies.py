"""Joining the index tables into one row per study: split, chosen frontal image, timeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cpo_pipeline import layout
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

# PA > AP > any other non-lateral view; laterals only when the study has nothing else.
_VIEW_RANK = {"PA": 0, "AP": 1}
_OTHER_VIEW_RANK = 2
_LATERAL_RANK = 3


def study_datetime(study_date: pd.Series, study_time: pd.Series) -> pd.Series:
    """StudyDate (YYYYMMDD) + StudyTime (HHMMSS.fff read as a number, so 08:05 is `80556.875`)."""
    dates = pd.to_datetime(study_date.astype(str).str.strip(), format="%Y%m%d", errors="coerce")
    clock = pd.to_numeric(study_time, errors="coerce").fillna(0.0)
    whole = np.floor(clock).astype("int64")
    seconds = (whole // 10_000) * 3600 + (whole // 100 % 100) * 60 + whole % 100
    return dates + pd.to_timedelta(seconds + (clock - whole), unit="s")


def view_rank(view_position: pd.Series) -> pd.Series:
    views = view_position.fillna("").str.strip().str.upper()
    rank = views.map(_VIEW_RANK).fillna(_OTHER_VIEW_RANK)
    rank[views.isin(layout.LATERAL_VIEWS)] = _LATERAL_RANK
    return rank.astype("int8")


def choose_frontal_images(images: pd.DataFrame) -> pd.DataFrame:
    """One image per study: PA > AP > other > lateral, ties broken by dicom_id for determinism.

    `images` needs study_id, dicom_id, ViewPosition. Adds `lateral_only` (no non-lateral image).
    """
    ranked = images.assign(_rank=view_rank(images["ViewPosition"]))
    chosen = ranked.sort_values(["study_id", "_rank", "dicom_id"]).drop_duplicates("study_id")
    chosen["lateral_only"] = chosen["_rank"] == _LATERAL_RANK
    return chosen.drop(columns="_rank")


def visit_index(frame: pd.DataFrame) -> pd.Series:
    """0-based order of each study within its patient, by study datetime then study id."""
    order = frame.sort_values(["subject_id", "study_datetime", "study_id"])
    return order.groupby("subject_id").cumcount().reindex(frame.index).astype("int32")


def time_stages(frame: pd.DataFrame, n_stages: int) -> pd.Series:
    """Time-ordered stages 0..n-1 for non-stationary training, from within-patient visit order.

    MIMIC-CXR dates are shifted per patient, so only the order within a patient is meaningful:
    a study's position is its visit index scaled by the patient's visit count, and stages are
    quantiles of that position over all studies.
    """
    if n_stages < 1:
        raise ValueError(f"n_stages must be >= 1, got {n_stages}")
    visits = frame.groupby("subject_id")["visit_index"].transform("max") + 1
    position = (frame["visit_index"] + 0.5) / visits
    ranks = position.rank(method="first") - 1
    return (ranks * n_stages // max(len(frame), 1)).astype("int32")



STUDY_COLUMNS = (
    "subject_id", "study_id", "split", "dicom_id", "view_position", "lateral_only", "n_images",
    "image_path", "findings_text", "findings_source", *CHEXPERT_LABELS, "label_source",
    "study_datetime", "visit_index", "stage",
)


def join_studies(
    images: pd.DataFrame, reports: pd.DataFrame, labels: pd.DataFrame, n_stages: int
) -> pd.DataFrame:
    """The study table every later stage reads.

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
    ordered = studies.sort_values(["subject_id", "visit_index"], ignore_index=True)
    return ordered[list(STUDY_COLUMNS)]
