"""The Definitions' resources with every path under one given data root: for materializing the
real assets from tests, benchmarks and scripts (`dg.materialize(..., resources=...)`)."""

from pathlib import Path

from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.parquet_io_manager import ParquetIOManager
from cpo_pipeline.resources.settings import PipelineSettings


def rooted_resources(
    data_root: Path, llm: LLMEndpointResource | None = None, **settings: str
) -> dict:
    """`settings`, `io_manager` and `llm` as `cpo_pipeline.definitions` wires them, rooted at
    `data_root` (other `PipelineSettings` fields as keywords; `llm` defaults to the
    environment's endpoint, or offline)."""
    configured = PipelineSettings(data_root=str(data_root), **settings)
    return {"settings": configured, "io_manager": ParquetIOManager(settings=configured),
            "llm": llm or LLMEndpointResource()}
