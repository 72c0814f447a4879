"""Fixtures the image tests share: a PNG store in the test's folder, a real chest radiograph."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from cpo_pipeline.ingestion.images import PreprocessConfig


@pytest.fixture
def config(tmp_path: Path) -> PreprocessConfig:
    return PreprocessConfig(store_root=str(tmp_path / "store"))


@pytest.fixture
def chest_pa() -> Path:
    return Path(get_testdata_file("RG1_UNCR.dcm"))
