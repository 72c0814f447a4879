"""Incremental re-runs of `counterfactual_trajectories`: which studies keep their earlier rows.

A study's rows depend on its findings and labels, on what its counterfactuals take from the
concept graph, and on the run's identity (expert, model and sampling parameters, prompt,
generator and options); their hash is the row's `input_key`. What a study takes from the graph
is its tasks as `plan_counterfactuals` plans them (source, target, the perturbation plan with
the edges it cites, the diagnoses the target excludes) and, for the LLM expert, the relations
its prompts quote (`graph_context`) — not the whole graph, which is rebuilt from every study:
a refresh that adds studies changes the graph's hash and its counts, yet most earlier studies
are planned exactly as before and keep their rows; one whose plan did move (a target drawn
anew under the new balance, an edge it cites reweighted) is generated again, as it should be.

A study whose key is unchanged keeps its rows without any work — unless one of them is a dead
letter: a transport failure says nothing about the study, so it is tried again on every run
(answers that did arrive are in the response cache and are not asked for again). A rejected
counterfactual is a verdict on the expert's answer and is kept while the inputs stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import networkx as nx
import pandas as pd

from cpo_pipeline import schemas
from cpo_pipeline.counterfactuals.generation import (
    DEAD_LETTER,
    LLM_BACKEND,
    CounterfactualTask,
    GenerationOptions,
    StudyInput,
    graph_context,
    sort_trajectories,
)
from cpo_pipeline.counterfactuals.prompts import PROMPT_HASH
from cpo_pipeline.llm.client import EndpointConfig
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.storage import content_hash


def run_identity(backend: str, endpoint: EndpointConfig | None, options: GenerationOptions,
                 generator: str) -> dict:
    """What every row of a run depends on besides its study and its plan: the expert (backend,
    model, sampling parameters), the prompt, the generator and the options."""
    return {
        "backend": backend,
        "model": None if endpoint is None else endpoint.model,
        "parameters": None if endpoint is None else endpoint.parameters,
        "prompt": PROMPT_HASH, "generator": generator,
        "options": [options.k, options.max_candidates, asdict(options.verifier)],
    }


def graph_use(tasks: Sequence[CounterfactualTask], graph: nx.MultiDiGraph,
              backend: str) -> list[dict]:
    """What a study's counterfactuals take from the concept graph: each task's source, target,
    plan (the edges it cites included) and excluded diagnoses, and with the LLM expert the
    relations its prompt quotes (the offline expert reads only the plan)."""
    return [{"source": task.source, "target": task.target, "plan": asdict(task.plan),
             "excluded": list(task.excluded),
             "context": graph_context(graph, task) if backend == LLM_BACKEND else None}
            for task in tasks]


def input_key(study: StudyInput, uses: list[dict], identity: dict) -> str:
    """The hash of everything a study's rows depend on (`uses`: its `graph_use`)."""
    labels = [study.labels[name] for name in CHEXPERT_LABELS]
    return content_hash({"findings": study.findings, "labels": labels, "graph": uses,
                         **identity})


@dataclass(frozen=True)
class ReusePlan:
    keys: dict[int, str]  # study_id -> input key, for every study of this run
    reused: pd.DataFrame  # earlier rows kept as they are
    todo: list[StudyInput]  # studies to generate
    retried: int  # of `todo`: studies whose inputs are unchanged but had a dead letter


def plan_reuse(
    studies: Sequence[StudyInput], planned: Mapping[int, Sequence[CounterfactualTask]],
    graph: nx.MultiDiGraph, identity: dict, previous: pd.DataFrame | None,
) -> ReusePlan:
    """Split `studies` (their tasks `planned` on `graph`, `plan_studies`) into those whose
    earlier rows stand and those to generate."""
    keys = {study.study_id: input_key(
        study, graph_use(planned[study.study_id], graph, identity["backend"]), identity)
        for study in studies}
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
