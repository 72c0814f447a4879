"""The training process's side of Dagster Pipes: the session, step logs, the materialization.

Only `dagster-pipes` (the dependency-free protocol package), never Dagster itself: this runs in
the training process, which the Dagster process launched and does not share code state with.
Only the main process of a multi-process run talks to Dagster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

from cpo_pipeline.training.report import metadata_type, summary_metadata


@contextmanager
def pipes_session(is_main_process: bool) -> Iterator[PipesContext | None]:
    """The Pipes context when Dagster launched this process and it is the main one, else None
    (a run by hand, or another rank)."""
    if not (is_main_process and PipesEnvVarParamsLoader().is_dagster_pipes_process()):
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


def step_log_callback(pipes: PipesContext):
    """A trainer callback that forwards each logged step to the Dagster run's log."""
    from transformers import TrainerCallback

    class ForwardSteps(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                rounded = {k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}
                pipes.log.info(f"step {state.global_step}: {json.dumps(rounded)}")

    return ForwardSteps()


def pipes_metadata(summary: dict) -> dict[str, Any]:
    """The summary's metadata in Pipes' form: typed where a scalar would not say enough."""
    typed = {}
    for key, value in summary_metadata(summary).items():
        kind = metadata_type(key, value)
        typed[key] = {"raw_value": value, "type": kind} if kind else value
    return typed


def report_materialization(pipes: PipesContext, summary: dict) -> None:
    pipes.report_asset_materialization(metadata=pipes_metadata(summary),
                                       data_version=summary["data_version"])
