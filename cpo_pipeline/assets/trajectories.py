"""counterfactual_trajectories: per study, the factual trajectory and k counterfactuals (Parquet).

The LLM expert runs when an endpoint is configured (`CPO_LLM_BASE_URL`, the `llm` resource);
otherwise the offline concept-graph expert does, and says so in every row. Re-runs are
incremental at two levels: a study whose inputs (findings, labels, concept graph, expert,
prompt, options) are unchanged keeps its rows from the previous materialization without any
work, and every LLM answer is in the durable response cache, so a killed run resumes without
sending a request twice.
"""

import hashlib
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from cpo_pipeline.assets.concepts import concept_graph
from cpo_pipeline.assets.metadata import markdown_table, sample_table, word_diff_markdown
from cpo_pipeline.concepts.graph import ConceptGraphFiles, read_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.counterfactuals import offline_expert
from cpo_pipeline.counterfactuals.generation import (
    ACCEPTED,
    COUNTERFACTUAL,
    FACTUAL,
    LLM_BACKEND,
    TRAJECTORY_COLUMNS,
    GenerationOptions,
    StudyInput,
    dead_letter_fraction,
    generate_trajectories,
    sort_trajectories,
    study_inputs,
)
from cpo_pipeline.counterfactuals.prompts import PROMPT_HASH
from cpo_pipeline.counterfactuals.verifier import VerifierConfig
from cpo_pipeline.layout import SPLITS
from cpo_pipeline.llm.client import RequestCounters
from cpo_pipeline.llm.response_cache import ResponseCache, content_hash
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.schemas import content_version
from cpo_pipeline.storage import table_path

GENERATOR_VERSION = "1"
_DIFF_SAMPLES = 5
_CHUNK_STUDIES = 2_000


class TrajectoryConfig(dg.Config):
    k: int = 2
    """Counterfactual trajectories per study (the paper's default is 2)."""
    max_candidates: int = 3
    """LLM candidates per counterfactual before it is recorded as rejected."""
    min_edit_tokens: int = 32
    """Verifier: edits up to this many tokens are always small enough."""
    max_edit_fraction: float = 0.6
    """Verifier: ... and up to this share of the factual findings' tokens."""
    max_dead_letter_fraction: float = 0.2
    """The blocking check fails when more counterfactuals than this end rejected or dead."""
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))
    """Which official splits get trajectories."""
    limit: int | None = None
    """At most this many studies (in study order), for a quick trial against a paid endpoint."""


def _input_key(study: StudyInput, identity: dict) -> str:
    """The hash of everything a study's rows depend on."""
    labels = [study.labels[name] for name in CHEXPERT_LABELS]
    return content_hash({"findings": study.findings, "labels": labels, **identity})


@dg.asset(
    deps=[concept_graph],
    group_name="counterfactuals",
    code_version=f"{GENERATOR_VERSION}.prompt-{PROMPT_HASH}",
    check_specs=[dg.AssetCheckSpec(
        "dead_letters_below_bound", asset="counterfactual_trajectories", blocking=True,
        description="Share of counterfactuals that ended rejected or dead-lettered is at most "
        "`max_dead_letter_fraction`.")],
    description="Per study: the factual reasoning trajectory and k counterfactual trajectories "
    "toward concept-graph-chosen target diseases, written by the LLM expert (or the offline "
    "concept-graph expert) and checked by the verifier.",
)
def counterfactual_trajectories(
    context: dg.AssetExecutionContext,
    config: TrajectoryConfig,
    cxr_studies: pd.DataFrame,
    settings: PipelineSettings,
    llm: LLMEndpointResource,
):
    resolved = settings.resolve()
    graph_files = ConceptGraphFiles.under(resolved.data_root)
    graph = read_graph(graph_files.graph)
    endpoint = llm.endpoint_config()
    options = GenerationOptions(
        k=config.k, max_candidates=config.max_candidates,
        verifier=VerifierConfig(config.min_edit_tokens, config.max_edit_fraction))
    identity = {
        "graph": hashlib.sha256(graph_files.graph.read_bytes()).hexdigest(),
        "backend": offline_expert.BACKEND if endpoint is None else LLM_BACKEND,
        "model": None if endpoint is None else endpoint.model,
        "parameters": None if endpoint is None else endpoint.parameters,
        "prompt": PROMPT_HASH, "generator": GENERATOR_VERSION,
        "options": [options.k, options.max_candidates, config.min_edit_tokens,
                    config.max_edit_fraction],
    }
    studies = cxr_studies[cxr_studies["split"].isin(config.splits)].sort_values("study_id")
    if config.limit is not None:
        studies = studies.head(config.limit)
    inputs = study_inputs(studies)
    keys = {study.study_id: _input_key(study, identity) for study in inputs}

    previous_path = table_path(resolved.data_root, ["counterfactual_trajectories"])
    previous = pq.read_table(previous_path).to_pandas() if previous_path.exists() else None
    reused = (previous[previous["input_key"].isin(set(keys.values()))]
              if previous is not None else None)
    unchanged = set(reused["input_key"]) if reused is not None else set()
    todo = [study for study in inputs if keys[study.study_id] not in unchanged]
    context.log.info(
        f"{len(inputs)} studies: {len(inputs) - len(todo)} unchanged since the last "
        f"materialization, {len(todo)} to generate with the "
        f"{identity['backend']} expert" + (f" ({endpoint.model})" if endpoint else ""))

    counters = RequestCounters()

    def progress(done: int, total: int, counts: RequestCounters) -> None:
        context.log.info(f"LLM expert: {done}/{total} answers; {counts.as_dict()}")

    extractor = ConceptExtractor(load_ontology())
    cache = ResponseCache.under(resolved.data_root) if endpoint is not None else None
    parts = []
    try:
        # In chunks, so the log shows progress on a large tree; a chunk is big enough to keep
        # an endpoint saturated (2 requests a study).
        for start in range(0, len(todo), _CHUNK_STUDIES):
            parts.append(generate_trajectories(
                todo[start:start + _CHUNK_STUDIES], graph, extractor, options,
                endpoint=endpoint, cache=cache, counters=counters, on_progress=progress))
            context.log.info(f"trajectories: {min(start + _CHUNK_STUDIES, len(todo))}/"
                             f"{len(todo)} studies generated")
    finally:
        if cache is not None:
            cache.close()
    fresh = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=list(TRAJECTORY_COLUMNS)))
    fresh["input_key"] = fresh["study_id"].map(keys)
    fresh["created_at"] = pd.Timestamp(datetime.now(UTC)).floor("ms")
    table = sort_trajectories(pd.concat([reused, fresh]) if reused is not None else fresh)

    fraction = dead_letter_fraction(table)
    version = dg.DataVersion(content_version(table, "counterfactual_trajectories"))
    yield dg.Output(table, data_version=version, metadata=_metadata(table, counters, len(todo)))
    yield dg.AssetCheckResult(
        check_name="dead_letters_below_bound", passed=fraction <= config.max_dead_letter_fraction,
        metadata={"fraction": round(fraction, 4), "bound": config.max_dead_letter_fraction},
    )


def _metadata(table: pd.DataFrame, counters: RequestCounters, generated: int) -> dict:
    counts = table.groupby(["kind", "verdict", "expert_backend"]).size().rename("rows")
    return {
        "studies": int(table["study_id"].nunique()),
        "studies_generated_this_run": generated,
        "rows_by_kind_verdict_backend": markdown_table(counts.reset_index().set_index("kind")),
        "llm": dg.MetadataValue.json(counters.as_dict()),
        "rejection_reasons": dg.MetadataValue.json(
            table.loc[table["kind"] == COUNTERFACTUAL, "verdict_reason"]
            .str.replace(r"\d+", "N", regex=True).value_counts().head(10).to_dict()),
        "factual_vs_counterfactual": dg.MetadataValue.md(_diff_samples(table)),
        "sample": sample_table(table.drop(columns=["plan", "edits"])),
    }


def _diff_samples(table: pd.DataFrame) -> str:
    factual = table[table["kind"] == FACTUAL].set_index("study_id")["findings"]
    accepted = table[(table["kind"] == COUNTERFACTUAL) & (table["verdict"] == ACCEPTED)]
    blocks = []
    for row in accepted.head(_DIFF_SAMPLES).itertuples():
        blocks.append(
            f"**study {row.study_id}: {row.source_diagnosis} → {row.target_disease}** "
            f"({row.expert_backend})\n\n{word_diff_markdown(factual[row.study_id], row.findings)}"
        )
    return "\n\n---\n\n".join(blocks) or "(no accepted counterfactual yet)"
