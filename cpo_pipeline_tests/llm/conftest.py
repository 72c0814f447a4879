"""The response cache the client's tests share, one per test."""

from pathlib import Path

import pytest

from cpo_pipeline.llm.response_cache import ResponseCache


@pytest.fixture
def cache(tmp_path: Path):
    with ResponseCache(tmp_path / "responses.sqlite") as opened:
        yield opened
