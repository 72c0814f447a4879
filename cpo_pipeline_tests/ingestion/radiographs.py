"""DICOM sources written for the image tests, and the reading back of what preprocessing made
of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cpo_pipeline.ingestion.image_store import ImageResult
from cpo_pipeline.ingestion.images import ImageJob, ImageReject, PreprocessConfig, preprocess_image

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
RAMP_12_BIT = np.arange(4096, dtype=np.uint16).reshape(64, 64)


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    **attributes: object,
) -> Path:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = DX_STORAGE
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPClassUID = DX_STORAGE
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.Modality = "DX"
    dataset.set_pixel_data(stored, photometric, bits_stored)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def job_for(path: Path, dicom_id: str = "d1") -> ImageJob:
    return ImageJob(str(path), dicom_id, study_id=50000001, subject_id=10000001)


def png_pixels(result: ImageResult | ImageReject) -> np.ndarray:
    assert isinstance(result, ImageResult), result
    with Image.open(result.image_path) as image:
        return np.asarray(image)


def reason_for(path: Path, config: PreprocessConfig) -> str:
    outcome = preprocess_image(job_for(path), config)
    assert isinstance(outcome, ImageReject), outcome
    assert (outcome.source_path, outcome.dicom_id, outcome.study_id) == (str(path), "d1", 50000001)
    return outcome.reason
