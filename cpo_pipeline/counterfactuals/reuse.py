"""Incremental re-runs of `counterfactual_trajectories`: which studies keep their earlier rows.

A study's rows depend on its findings and labels and on the run's identity (concept graph,
expert, model and sampling parameters, prompt, generator and options); their hash is the row's
`input_key`. A study whose key is unchanged keeps its rows without any work — unless one of them
is a dead letter: a transport failure says nothing about the study, so it is tried again on every
run (answers that did arrive are in the response cache and are not asked for again). A
rejected counterfactual is a verdict on the expert's answer and is kept while the inputs stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from cpo_pipeline import schemas
from cpo_pipeline.counterfactuals.generation import (
    DEAD_LETTER,
    GenerationOptions,
    StudyInput,
    sort_trajectories,
)
from cpo_pipeline.counterfactuals.prompts import PROMPT_HASH
from cpo_pipeline.llm.client import EndpointConfig
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.storage import content_hash


def run_identity(graph_sha256: str, backend: str, endpoint: EndpointConfig | None,
                 options: GenerationOptions, generator: str) -> dict:
    """What every row of a run depends on besides its study: the concept graph (by hash), the
    expert (backend, model, sampling parameters), the prompt, the generator and the options."""
    return {
        "graph": graph_sha256, "backend": backend,
        "model": None if endpoint is None else endpoint.model,
        "parameters": None if endpoint is None else endpoint.parameters,
        "prompt": PROMPT_HASH, "generator": generator,
        "options": [options.k, options.max_candidates, options.verifier.min_edit_tokens,
                    options.verifier.max_edit_fraction],
    }


def input_key(study: StudyInput, identity: dict) -> str:
    """The hash of everything a study's rows depend on."""
    labels = [study.labels[name] for name in CHEXPERT_LABELS]
    return content_hash({"findings": study.findings, "labels": labels, **identity})


@dataclass(frozen=True)
class ReusePlan:
    keys: dict[int, str]  # study_id -> input key, for every study of this run
    reused: pd.DataFrame  # earlier rows kept as they are
    todo: list[StudyInput]  # studies to generate
    retried: int  # of `todo`: studies whose inputs are unchanged but had a dead letter


def plan_reuse(
    studies: Sequence[StudyInput], identity: dict, previous: pd.DataFrame | None
) -> ReusePlan:
    """Split `studies` into those whose earlier rows stand and those to generate."""
    keys = {study.study_id: input_key(study, identity) for study in studies}
    if previous is None or previous.empty:
        return ReusePlan(keys, previous.iloc[0:0] if previous is not None else _empty(),
                         list(studies), 0)
    current = previous[previous["input_key"] == previous["study_id"].map(keys)]
    dead = set(current.loc[current["verdict"] == DEAD_LETTER, "study_id"])
    reused = current[~current["study_id"].isin(dead)]
    kept = set(reused["study_id"])
    todo = [study for study in studies if study.study_id not in kept]
    return ReusePlan(keys, reused, todo, len(dead))


def assemble(plan: ReusePlan, fresh: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """The table to write: kept rows plus fresh ones (keyed and stamped), in study order."""
    fresh = fresh.assign(
        input_key=fresh["study_id"].map(plan.keys),
        created_at=pd.Timestamp(now or datetime.now(UTC)).floor("ms"),
    )
    parts = [frame for frame in (plan.reused, fresh) if not frame.empty]
    table = pd.concat(parts, ignore_index=True) if parts else _empty()
    return sort_trajectories(table)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=list(schemas.COUNTERFACTUAL_TRAJECTORIES.names))
