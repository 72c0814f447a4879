"""Joining the index tables into one row per study: split, chosen frontal image, timeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cpo_pipeline import layout
from cpo_pipeline.ingestion.index import (
    IndexTableError,
    Reject,
    read_index_table,
    rejects_frame,
    validate_ids,
)
from cpo_pipeline.ingestion.source import MimicSource

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


def read_validated(source: MimicSource, name: str, required: tuple[str, ...],
                   id_columns: tuple[str, ...]) -> tuple[pd.DataFrame | None, list[Reject]]:
    """Read index table `name` from the source (None if absent) with id validation."""
    path = source.find_table(name)
    if path is None:
        return None, []
    return validate_ids(read_index_table(path, required), path, f"index:{name}", id_columns)


def build_study_index(source: MimicSource, n_stages: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`cxr_studies` (index part) and the rejects found on the way, from the index tables."""
    metadata, rejects = read_validated(
        source, layout.METADATA, layout.METADATA_COLUMNS, ("dicom_id", "subject_id", "study_id")
    )
    split, split_rejects = read_validated(
        source, layout.SPLIT, layout.SPLIT_COLUMNS, ("dicom_id", "subject_id", "study_id")
    )
    studies_list, study_rejects = read_validated(
        source, layout.STUDY_LIST, layout.STUDY_LIST_COLUMNS, ("subject_id", "study_id")
    )
    rejects += split_rejects + study_rejects
    if metadata is None or split is None:
        raise IndexTableError(
            f"{source.roots}: need {layout.METADATA}(.gz) and {layout.SPLIT}(.gz) (from the "
            "MIMIC-CXR-JPG release) in MIMIC_CXR_ROOT or MIMIC_CXR_JPG_ROOT"
        )
    images = metadata.merge(split[["dicom_id", "split"]], on="dicom_id", how="left")
    chosen = choose_frontal_images(images)
    counts = images.groupby("study_id").size().rename("n_images")
    studies = chosen.join(counts, on="study_id")
    studies["study_datetime"] = study_datetime(studies["StudyDate"], studies["StudyTime"])
    no_split = studies["split"].isna()
    rejects += [
        Reject("index:split", str(source.find_table(layout.SPLIT)), "study has no split row",
               int(row.subject_id), int(row.study_id))
        for row in studies.loc[no_split].itertuples()
    ]
    studies = studies.loc[~no_split].reset_index(drop=True)
    if studies_list is not None:
        studies = studies.merge(
            studies_list[["study_id", "path"]].rename(columns={"path": "report_path"}),
            on="study_id", how="left",
        )
    else:
        studies["report_path"] = None
    studies["view_position"] = studies["ViewPosition"].replace("", None)
    studies["visit_index"] = visit_index(studies)
    studies["stage"] = time_stages(studies, n_stages)
    columns = ["subject_id", "study_id", "split", "n_images", "dicom_id", "view_position",
               "lateral_only", "study_datetime", "visit_index", "stage", "report_path"]
    return studies[columns], rejects_frame(rejects)
