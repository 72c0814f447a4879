"""The whole ingestion of one MIMIC-CXR tree: images, reports, labels, studies, rejects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cpo_pipeline import layout
from cpo_pipeline.ingestion.images import (
    ImageJob,
    ImageResult,
    PreprocessConfig,
    preprocess_images,
)
from cpo_pipeline.ingestion.index import Reject, read_image_index, rejects_frame
from cpo_pipeline.ingestion.labels import read_labels, read_test_set_labels
from cpo_pipeline.ingestion.reports import read_reports
from cpo_pipeline.ingestion.source import MimicSource
from cpo_pipeline.ingestion.studies import join_studies

IMAGE_RESULT_FIELDS = tuple(field.name for field in dataclasses.fields(ImageResult))


@dataclass(frozen=True)
class IngestOptions:
    n_stages: int = 3
    label_source: str = "chexpert"
    longest_side: int = 512
    workers: int = 2


@dataclass(frozen=True)
class IngestedTables:
    images: pd.DataFrame
    reports: pd.DataFrame
    labels: pd.DataFrame
    studies: pd.DataFrame
    rejects: pd.DataFrame
    decoded_images: int


def image_cache(previous_images: pd.DataFrame | None) -> dict[str, ImageResult]:
    """Earlier `cxr_images` rows as results `preprocess_images` may reuse without decoding."""
    if previous_images is None or previous_images.empty:
        return {}
    if any(name not in previous_images.columns for name in IMAGE_RESULT_FIELDS):
        return {}
    rows = previous_images[list(IMAGE_RESULT_FIELDS)].astype(object)
    rows = rows.where(rows.notna(), None)
    return {row["dicom_id"]: ImageResult(**row) for row in rows.to_dict("records")}


def _same_pixels(cached: ImageResult | None, result: ImageResult) -> bool:
    """Whether `result` is the cached PNG (a moved data root changes only the paths)."""
    return cached is not None and (cached.source_sha256, cached.image_sha256, cached.recipe) == (
        result.source_sha256, result.image_sha256, result.recipe)


def _image_table(results: list[ImageResult], index: pd.DataFrame) -> pd.DataFrame:
    images = pd.DataFrame([dataclasses.asdict(r) for r in results],
                          columns=list(IMAGE_RESULT_FIELDS))
    listed = index.set_index("dicom_id")
    # The metadata table's ViewPosition is what the official tools use; the DICOM tag backs it up.
    listed_view = images["dicom_id"].map(listed["ViewPosition"]).replace("", None)
    images["view_position"] = listed_view.fillna(images["view_position"])
    images["split"] = images["dicom_id"].map(listed["split"])
    return images


def prefer_radiologist_labels(
    labels: pd.DataFrame, radiologist: pd.DataFrame, index: pd.DataFrame
) -> pd.DataFrame:
    """Where the 2.1.0 radiologist test-set labels cover a study, they replace the automatic
    labeller's row (`label_source` says which); subject ids come from the image index."""
    subject_of = index.drop_duplicates("study_id").set_index("study_id")["subject_id"]
    radiologist = radiologist.assign(
        subject_id=radiologist["study_id"].map(subject_of).astype("Int64"))
    automatic = labels[~labels["study_id"].isin(radiologist["study_id"])]
    return pd.concat([automatic.astype({"subject_id": "Int64"}), radiologist], ignore_index=True)


def ingest(
    source: MimicSource,
    options: IngestOptions,
    image_store: Path,
    previous_images: pd.DataFrame | None = None,
) -> IngestedTables:
    """Read, check and join everything; every input that cannot be used becomes a reject."""
    index, study_list, rejects = read_image_index(source)

    jobs = [ImageJob(p, d, int(t), int(s)) for p, d, t, s in zip(
        index["source_path"], index["dicom_id"], index["study_id"], index["subject_id"])]
    cache = image_cache(previous_images)
    config = PreprocessConfig(store_root=str(image_store), longest_side=options.longest_side)
    results, image_rejects = preprocess_images(jobs, config, workers=options.workers, cache=cache)
    subject_of = dict(zip(index["dicom_id"], index["subject_id"]))
    rejects += [Reject("images", r.source_path, r.reason, int(subject_of[r.dicom_id]),
                       r.study_id, r.dicom_id) for r in image_rejects]
    images = _image_table(results, index)

    studies_with_images = index.drop_duplicates("study_id")[["subject_id", "study_id"]]
    if study_list is not None:
        studies_with_images = studies_with_images.merge(
            study_list[["study_id", "path"]].rename(columns={"path": "report_path"}),
            on="study_id", how="left",
        )
    reports, report_rejects = read_reports(source, studies_with_images)
    labels, label_rejects = read_labels(source, options.label_source)
    rejects += report_rejects + label_rejects
    if source.find_table(layout.TEST_SET_LABELED) is not None:
        radiologist, radiologist_rejects = read_test_set_labels(source)
        labels = prefer_radiologist_labels(labels, radiologist, index)
        rejects += radiologist_rejects

    usable = index.merge(images[["dicom_id", "image_path"]], on="dicom_id", how="inner")
    studies = join_studies(usable, reports, labels, options.n_stages)
    decoded = sum(1 for r in results if not _same_pixels(cache.get(r.dicom_id), r))
    return IngestedTables(images, reports, labels, studies, rejects_frame(rejects), decoded)
