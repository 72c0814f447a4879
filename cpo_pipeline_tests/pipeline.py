"""Materializing the project's real assets in a test, with every path under one data root."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from cpo_pipeline.definitions import defs
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.rooted import rooted_resources

ASSETS = ("cxr_studies", "concept_graph", "counterfactual_trajectories", "sft_dataset",
          "preference_pairs", "random_negative_pairs", "diagnosis_only_pairs")


def materialize(
    data_root: Path,
    selection: str | Sequence[str] | None = None,
    *,
    run_config: dict | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    llm: LLMEndpointResource | None = None,
    **settings: str,
) -> dg.ExecuteInProcessResult:
    """Materialize `selection` (asset names, or one selection string like
    `"+counterfactual_trajectories"`; default every asset) as `dagster asset materialize` would."""
    return dg.materialize(
        [defs.get_assets_def(name) for name in ASSETS],
        resources=rooted_resources(data_root, llm, **settings),
        selection=selection if selection is None or isinstance(selection, str) else list(selection),
        run_config=run_config,
        instance=instance,
        raise_on_error=raise_on_error,
    )
