"""Fixtures for the whole suite: a clean environment for every test, and the demo chain
materialized once per session for the tests that only read what it wrote."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from cpo_pipeline.settings import HUGGING_FACE_OFFLINE, PIPELINE_ENVIRONMENT
from cpo_pipeline_tests.pipeline import materialize

os.environ.update(HUGGING_FACE_OFFLINE)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No pipeline variable is set (a developer's own must not leak into a test, and no test
    leaves one behind); set one with the returned monkeypatch."""
    for name in PIPELINE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@dataclass(frozen=True)
class DemoRun:
    data_root: Path
    result: dg.ExecuteInProcessResult

    def copy_to(self, destination: Path) -> Path:
        """A private copy of the data root, for a test that changes or re-materializes it."""
        shutil.copytree(self.data_root, destination, symlinks=True)
        return destination


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """Every asset materialized once on a fresh data root with the embedded defaults (demo
    tree, offline expert). Read it; to change it, `copy_to` a test's own folder first."""
    data_root = tmp_path_factory.mktemp("demo-data")
    with pytest.MonkeyPatch.context() as env:
        for name in PIPELINE_ENVIRONMENT:
            env.delenv(name, raising=False)
        result = materialize(data_root)
    assert result.success
    return DemoRun(data_root, result)

