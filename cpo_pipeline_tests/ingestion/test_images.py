from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from cpo_pipeline.ingestion.images import (
    ImageJob,
    ImageReject,
    ImageResult,
    PreprocessConfig,
    preprocess_image,
    preprocess_images,
)

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


@pytest.fixture
def config(tmp_path: Path) -> PreprocessConfig:
    return PreprocessConfig(store_root=str(tmp_path / "store"))


@pytest.fixture
def chest_pa() -> Path:
    return Path(get_testdata_file("RG1_UNCR.dcm"))


def test_monochrome1_is_inverted_to_the_png_of_its_monochrome2_twin(tmp_path, config):
    dark_is_low = write_dicom(tmp_path / "m2.dcm", RAMP_12_BIT, photometric="MONOCHROME2")
    dark_is_high = write_dicom(tmp_path / "m1.dcm", 4095 - RAMP_12_BIT, photometric="MONOCHROME1")

    m2 = preprocess_image(job_for(dark_is_low), config)
    m1 = preprocess_image(job_for(dark_is_high), config)

    assert m1.image_sha256 == m2.image_sha256
    assert png_pixels(m2)[0, 0] == 0 and png_pixels(m2)[-1, -1] == 255


def test_without_a_window_the_image_range_is_stretched_to_0_255(tmp_path, config):
    stored = np.array([[1000, 2000, 3000]], dtype=np.uint16)

    result = preprocess_image(job_for(write_dicom(tmp_path / "a.dcm", stored)), config)

    assert png_pixels(result).tolist() == [[0, 128, 255]]


def test_unused_high_bits_are_ignored(tmp_path, config):
    # 12 of 16 bits stored; the 4 unused bits hold junk that must not reach the display.
    junk = np.array([[0xF000, 0xA000 | 2048, 0x5000 | 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "a.dcm", junk, bits_stored=16)
    dataset = pydicom.dcmread(path)
    dataset.BitsStored, dataset.HighBit = 12, 11
    dataset.save_as(path)

    result = preprocess_image(job_for(path), config)

    assert png_pixels(result).tolist() == [[0, 128, 255]]


def test_window_center_and_width_clip_and_stretch_the_window(tmp_path, config):
    stored = np.array([[0, 1000, 1500, 2000, 3000, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "a.dcm", stored, WindowCenter=2000, WindowWidth=2000)

    result = preprocess_image(job_for(path), config)

    assert png_pixels(result).tolist() == [[0, 0, 64, 128, 255, 255]]


def test_window_is_applied_to_values_after_the_modality_rescale(tmp_path, config):
    # Stored 250/500/750 rescale to -500/0/500: below, at and above a window centred on 0.
    # Windowing the raw stored values would put all three above the window (white).
    stored = np.array([[250, 500, 750]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "a.dcm",
        stored,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=0,
        WindowWidth=1000,
    )

    result = preprocess_image(job_for(path), config)

    assert png_pixels(result).tolist() == [[0, 128, 255]]


def test_longest_side_is_scaled_to_the_config_keeping_the_aspect_ratio(tmp_path):
    config = PreprocessConfig(store_root=str(tmp_path / "store"), longest_side=60)
    tall = np.tile(np.arange(200, dtype=np.uint16) * 20, (300, 1))

    result = preprocess_image(job_for(write_dicom(tmp_path / "a.dcm", tall)), config)

    assert (result.rows, result.cols) == (300, 200)
    assert (result.width, result.height) == (40, 60)
    assert png_pixels(result).shape == (60, 40)


def test_images_smaller_than_the_longest_side_are_not_enlarged(tmp_path, config):
    small = np.arange(600, dtype=np.uint16).reshape(30, 20)

    result = preprocess_image(job_for(write_dicom(tmp_path / "a.dcm", small)), config)

    assert (result.width, result.height) == (20, 30)


def test_equalize_flattens_the_histogram_of_the_png(tmp_path):
    config = PreprocessConfig(store_root=str(tmp_path / "store"), equalize=True)
    four_levels = np.repeat(np.array([0, 10, 20, 255], dtype=np.uint16), 400).reshape(40, 40)
    path = write_dicom(tmp_path / "a.dcm", four_levels, bits_stored=8)

    result = preprocess_image(job_for(path), config)

    assert np.unique(png_pixels(result)).tolist() == [0, 100, 200, 255]


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


def test_jpeg_2000_lossless_copy_gives_the_identical_png(chest_pa, config):
    uncompressed = preprocess_image(job_for(chest_pa), config)
    jpeg_2000 = preprocess_image(job_for(Path(get_testdata_file("RG1_J2KR.dcm"))), config)

    assert jpeg_2000.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    assert jpeg_2000.image_sha256 == uncompressed.image_sha256


def test_jpg_source_is_shrunk_to_grayscale_without_dicom_attributes(tmp_path):
    config = PreprocessConfig(store_root=str(tmp_path / "store"), longest_side=50)
    path = tmp_path / "a.jpg"
    Image.new("RGB", (200, 100), (90, 90, 90)).save(path, "JPEG")

    result = preprocess_image(job_for(path), config)

    assert (result.cols, result.rows, result.width, result.height) == (200, 100, 50, 25)
    with Image.open(result.image_path) as image:
        assert image.mode == "L"
    assert (result.photometric_interpretation, result.transfer_syntax_uid) == (None, None)
    assert (result.bits_stored, result.view_position) == (None, None)


def reason_for(path: Path, config: PreprocessConfig) -> str:
    outcome = preprocess_image(job_for(path), config)
    assert isinstance(outcome, ImageReject), outcome
    assert (outcome.source_path, outcome.dicom_id, outcome.study_id) == (str(path), "d1", 50000001)
    return outcome.reason


def test_missing_file_is_rejected(tmp_path, config):
    assert reason_for(tmp_path / "absent.dcm", config) == "file missing"


def test_non_dicom_bytes_are_rejected_for_the_missing_preamble(tmp_path, config):
    path = tmp_path / "a.dcm"
    path.write_bytes(bytes(128) + b"NOPE" + bytes(100))

    assert reason_for(path, config) == "not a DICOM file (no DICM preamble at byte 128)"


def test_uncompressed_dicom_cut_in_half_is_rejected_as_truncated(tmp_path, chest_pa, config):
    whole = chest_pa.read_bytes()
    path = tmp_path / "half.dcm"
    path.write_bytes(whole[: len(whole) // 2])

    assert reason_for(path, config) == (
        "truncated DICOM: the file ends inside (7FE0,0010) PixelData, 3598420 of 7198310 bytes "
        "present"
    )


def test_jpeg_2000_dicom_cut_in_half_is_rejected_as_truncated(tmp_path, config):
    whole = Path(get_testdata_file("RG1_J2KR.dcm")).read_bytes()
    path = tmp_path / "half.dcm"
    path.write_bytes(whole[: len(whole) // 2])

    assert reason_for(path, config).startswith("truncated DICOM: End of file reached")


def test_dicom_without_pixel_data_is_rejected(tmp_path, config):
    path = write_dicom(tmp_path / "a.dcm", RAMP_12_BIT)
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)

    assert reason_for(path, config) == (
        "no pixel data: the file has no (7FE0,0010) Pixel Data element"
    )


@pytest.mark.parametrize(
    ("syntax", "reason"),
    [
        (
            "1.2.826.0.1.3680043.9.9999.1",
            (
                "unsupported transfer syntax 1.2.826.0.1.3680043.9.9999.1 (not a syntax pydicom "
                "knows): no pixel-data plugin can decode it"
            ),
        ),
        (
            "1.2.840.10008.1.2.4.100",
            (
                "unsupported transfer syntax 1.2.840.10008.1.2.4.100 (MPEG2 Main Profile / Main "
                "Level): no pixel-data plugin can decode it"
            ),
        ),
    ],
)
def test_transfer_syntax_no_plugin_decodes_is_rejected_naming_it(tmp_path, config, syntax, reason):
    path = write_dicom(tmp_path / "a.dcm", RAMP_12_BIT)
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = UID(syntax)
    dataset.PixelData = encapsulate([RAMP_12_BIT.tobytes()])
    dataset.save_as(path, implicit_vr=False, little_endian=True)

    assert reason_for(path, config) == reason


def test_truncated_jpg_is_rejected_as_corrupt(tmp_path, config):
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (64, 1))).save(buffer, "JPEG")
    path = tmp_path / "a.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    assert reason_for(path, config).startswith("corrupt JPEG: image file is truncated")


def test_text_named_jpg_is_rejected_as_not_a_jpeg(tmp_path, config):
    path = tmp_path / "a.jpg"
    path.write_text("not an image")

    assert reason_for(path, config) == "not a JPEG file: no image format recognised in its bytes"


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


@pytest.fixture
def dcmread_calls(monkeypatch) -> list[object]:
    calls: list[object] = []
    real_dcmread = pydicom.dcmread

    def counting_dcmread(*args, **kwargs):
        calls.append(args[0])
        return real_dcmread(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting_dcmread)
    return calls


def first_run(tmp_path: Path, config: PreprocessConfig) -> tuple[ImageJob, dict[str, ImageResult]]:
    job = job_for(write_dicom(tmp_path / "a.dcm", RAMP_12_BIT))
    results, _ = preprocess_images([job], config, workers=1)
    return job, {result.dicom_id: result for result in results}


def test_unchanged_source_is_returned_from_the_cache_without_decoding(
    tmp_path, config, dcmread_calls
):
    job, cache = first_run(tmp_path, config)
    dcmread_calls.clear()

    results, rejects = preprocess_images([job], config, workers=1, cache=cache)

    assert dcmread_calls == []
    assert (results, rejects) == ([cache["d1"]], [])


def test_changed_source_is_decoded_again(tmp_path, config, dcmread_calls):
    job, cache = first_run(tmp_path, config)
    write_dicom(Path(job.source_path), 4095 - RAMP_12_BIT)
    dcmread_calls.clear()

    results, _ = preprocess_images([job], config, workers=1, cache=cache)

    assert len(dcmread_calls) == 1
    assert results[0].image_sha256 != cache["d1"].image_sha256


def test_cached_result_whose_png_left_the_store_is_decoded_again(tmp_path, config, dcmread_calls):
    job, cache = first_run(tmp_path, config)
    Path(cache["d1"].image_path).unlink()
    dcmread_calls.clear()

    results, _ = preprocess_images([job], config, workers=1, cache=cache)

    assert len(dcmread_calls) == 1
    assert Path(results[0].image_path).read_bytes()


def test_cached_result_made_with_another_recipe_is_decoded_again(tmp_path, config, dcmread_calls):
    job, cache = first_run(tmp_path, config)
    smaller = PreprocessConfig(store_root=config.store_root, longest_side=16)
    dcmread_calls.clear()

    results, _ = preprocess_images([job], smaller, workers=1, cache=cache)

    assert len(dcmread_calls) == 1
    assert (results[0].width, results[0].height) == (16, 16)
