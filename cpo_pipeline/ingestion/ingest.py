"""The whole ingestion of one MIMIC-CXR tree: images, reports, labels, studies, rejects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cpo_pipeline import mimic_layout
from cpo_pipeline.ingestion.image_store import (
    IMAGE_RESULT_FIELDS,
    ImageResult,
    read_decode_cache,
    same_pixels,
    write_decode_cache,
)
from cpo_pipeline.ingestion.images import ImageJob, PreprocessConfig, preprocess_images
from cpo_pipeline.ingestion.index import Reject, read_image_index, rejects_frame
from cpo_pipeline.ingestion.labels import read_labels, read_test_set_labels
from cpo_pipeline.ingestion.reports import read_reports
from cpo_pipeline.ingestion.source import MimicSource
from cpo_pipeline.ingestion.studies import join_studies


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

    @property
    def reused_images(self) -> int:
        """Images whose PNG came from the decode cache (source bytes and recipe unchanged)."""
        return len(self.images) - self.decoded_images


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


def ingest(source: MimicSource, options: IngestOptions, image_store: Path) -> IngestedTables:
    """Read, check and join everything; every input that cannot be used becomes a reject.

    Images whose source bytes and recipe are unchanged since the store's last run are not
    decoded again (`image_store.read_decode_cache`), whichever tables that run wrote.
    """
    index, study_list, rejects = read_image_index(source)

    jobs = [ImageJob(p, d, int(t), int(s)) for p, d, t, s in zip(
        index["source_path"], index["dicom_id"], index["study_id"], index["subject_id"])]
    cache = read_decode_cache(image_store)
    config = PreprocessConfig(store_root=str(image_store), longest_side=options.longest_side)
    results, image_rejects = preprocess_images(jobs, config, workers=options.workers, cache=cache)
    write_decode_cache(image_store, results)
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
    if source.find_table(mimic_layout.TEST_SET_LABELED) is not None:
        radiologist, radiologist_rejects = read_test_set_labels(source)
        labels = prefer_radiologist_labels(labels, radiologist, index)
        rejects += radiologist_rejects

    usable = index.merge(images[["dicom_id", "image_path"]], on="dicom_id", how="inner")
    studies = join_studies(usable, reports, labels, options.n_stages)
    decoded = sum(1 for r in results if not same_pixels(cache.get(r.dicom_id), r))
    return IngestedTables(images, reports, labels, studies, rejects_frame(rejects), decoded)
