"""Decoding: photometric interpretation, windowing, stored bits, resizing, and every reason a
source is rejected (`ingestion.dicom_decode`), seen through the PNG preprocessing makes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from cpo_pipeline.ingestion.images import PreprocessConfig, preprocess_image
from cpo_pipeline_tests.ingestion.radiographs import (
    RAMP_12_BIT,
    job_for,
    png_pixels,
    reason_for,
    write_dicom,
)


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
