"""The image store's reuse: an earlier result is returned without decoding only while its
source, recipe and PNG are unchanged (`ingestion.image_store`)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from cpo_pipeline.ingestion.image_store import ImageResult
from cpo_pipeline.ingestion.images import ImageJob, PreprocessConfig, preprocess_images
from cpo_pipeline_tests.ingestion.radiographs import RAMP_12_BIT, job_for, write_dicom


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
