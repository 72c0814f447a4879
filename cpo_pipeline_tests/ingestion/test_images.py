"""Preprocessing as a whole: the record of a stored image, equalisation, and batches in a pool
(`ingestion.images`)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from cpo_pipeline.ingestion.images import PreprocessConfig, preprocess_image, preprocess_images
from cpo_pipeline_tests.ingestion.radiographs import (
    RAMP_12_BIT,
    job_for,
    png_pixels,
    reason_for,
    write_dicom,
)


def test_real_chest_radiograph_is_described_and_stored_by_content_hash(chest_pa, config):
    result = preprocess_image(job_for(chest_pa), config)

    png = Path(result.image_path).read_bytes()
    assert result.image_sha256 == hashlib.sha256(png).hexdigest()
    assert result.image_path == str(
        Path(config.store_root, result.image_sha256[:2], f"{result.image_sha256}.png")
    )
    assert result.source_sha256 == hashlib.sha256(chest_pa.read_bytes()).hexdigest()
    assert (result.rows, result.cols, result.width, result.height) == (1955, 1841, 482, 512)
    assert result.photometric_interpretation == "MONOCHROME1"
    assert result.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (result.bits_stored, result.view_position) == (15, "PA")
    assert result.recipe == "v1 longest_side=512 equalize=False"


def test_equalize_flattens_the_histogram_of_the_png(tmp_path):
    config = PreprocessConfig(store_root=str(tmp_path / "store"), equalize=True)
    four_levels = np.repeat(np.array([0, 10, 20, 255], dtype=np.uint16), 400).reshape(40, 40)
    path = write_dicom(tmp_path / "a.dcm", four_levels, bits_stored=8)

    result = preprocess_image(job_for(path), config)

    assert np.unique(png_pixels(result)).tolist() == [0, 100, 200, 255]


def test_missing_file_is_rejected(tmp_path, config):
    assert reason_for(tmp_path / "absent.dcm", config) == "file missing"


def test_mixed_batch_in_two_workers_keeps_every_good_image_and_rejects_exactly_the_bad(
    tmp_path, config
):
    good = [write_dicom(tmp_path / f"good{i}.dcm", RAMP_12_BIT // (i + 1)) for i in range(3)]
    not_dicom = tmp_path / "bad.dcm"
    not_dicom.write_bytes(bytes(200))
    paths = [good[0], tmp_path / "absent.dcm", good[1], not_dicom, good[2]]
    jobs = [job_for(path, dicom_id=f"d{i}") for i, path in enumerate(paths)]

    results, rejects = preprocess_images(jobs, config, workers=2)

    assert [result.dicom_id for result in results] == ["d0", "d2", "d4"]
    assert [(reject.dicom_id, reject.reason.split(" (")[0]) for reject in rejects] == [
        ("d1", "file missing"),
        ("d3", "not a DICOM file"),
    ]


def test_a_pool_started_beside_other_threads_gives_the_same_images(tmp_path, config):
    # With another thread alive the pool must not fork this process (forkserver instead).
    paths = [write_dicom(tmp_path / f"good{i}.dcm", RAMP_12_BIT // (i + 1)) for i in range(2)]
    jobs = [job_for(path, dicom_id=f"d{i}") for i, path in enumerate(paths)]
    inline, _ = preprocess_images(jobs, config, workers=1)
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)
    bystander.start()
    try:
        pooled, rejects = preprocess_images(jobs, config, workers=2)
    finally:
        release.set()
        bystander.join()

    assert rejects == []
    assert [r.image_sha256 for r in pooled] == [r.image_sha256 for r in inline]
