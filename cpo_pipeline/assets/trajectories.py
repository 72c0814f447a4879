"""counterfactual_trajectories: per study, the factual trajectory and k counterfactuals (Parquet).

The LLM expert runs when an endpoint is configured (`CPO_LLM_BASE_URL`, the `llm` resource);
otherwise the offline concept-graph expert does, and says so in every row. Re-runs are
incremental at two levels: a study whose inputs (findings, labels, what its plan takes from the
concept graph, expert, prompt, options; `counterfactuals.reuse`) are unchanged keeps its rows
from the previous materialization without any work — a refresh that adds studies rebuilds the
graph, yet leaves most earlier studies' plans as they were — and every LLM answer is in the
durable response cache, so a killed run resumes without sending a request twice.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from cpo_pipeline.concepts.graph import ConceptGraphFiles, read_graph
from cpo_pipeline.concepts.mentions import ConceptExtractor
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.counterfactuals import offline_expert
from cpo_pipeline.counterfactuals.bounds import (
    HardNegativeBounds,
    bounds_description,
    gate_description,
)
from cpo_pipeline.counterfactuals.generation import (
    ACCEPTED,
    COUNTERFACTUAL,
    FACTUAL,
    LLM_BACKEND,
    TRAJECTORY_COLUMNS,
    GenerationOptions,
    dead_letter_fraction,
    edit_kinds,
    generate_trajectories,
    labelled,
    plan_studies,
    study_inputs,
)
from cpo_pipeline.counterfactuals.masking import seed_mask
from cpo_pipeline.counterfactuals.prompts import PROMPT_HASH
from cpo_pipeline.counterfactuals.quality import hard_negative_verdict
from cpo_pipeline.counterfactuals.reuse import assemble, plan_reuse, run_identity
from cpo_pipeline.counterfactuals.verifier import VerifierConfig
from cpo_pipeline.llm.client import RequestCounters
from cpo_pipeline.llm.response_cache import ResponseCache
from cpo_pipeline.mimic_layout import SPLITS
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.schemas import content_version
from cpo_pipeline.storage import previous_table
from cpo_pipeline.wiring.launchpad import Offered, launchpad_config
from cpo_pipeline.wiring.metadata import sample_table, word_diff_markdown

GENERATOR_VERSION = "8"
_DIFF_SAMPLES = 5
_CHUNK_STUDIES = 2_000


# What the expert, the verifier and the hard-negative gate take, with their defaults and help
# (the gate's length bounds stay fixed); the rest is how this asset picks and reports studies.
_GENERATION = Offered(GenerationOptions, leave_out=frozenset({"verifier"}))
_VERIFIER = Offered(VerifierConfig)
_GATE = Offered(HardNegativeBounds, leave_out=frozenset({"length_ratio", "max_longer_share"}),
                rename={"confidence_z": "style_confidence_z"})
TrajectoryConfig = launchpad_config("TrajectoryConfig", _GENERATION, _VERIFIER, _GATE, extra={
    "max_dead_letter_fraction": (float, Field(
        default=0.2,
        description="The blocking check fails when more counterfactuals than this end rejected "
        "or dead-lettered.")),
    "splits": (list[str], Field(default_factory=lambda: list(SPLITS),
                                description="Which official splits get trajectories.")),
    "limit": (int | None, Field(
        default=None,
        description="At most this many studies (in study order), for a quick trial against a "
        "paid endpoint.")),
})


@dg.asset(
    deps=["concept_graph"],
    group_name="counterfactuals",
    code_version=f"{GENERATOR_VERSION}.prompt-{PROMPT_HASH}",
    check_specs=[dg.AssetCheckSpec(
        "dead_letters_below_bound", asset="counterfactual_trajectories", blocking=True,
        description="Share of counterfactuals that ended rejected or dead-lettered is at most "
        "`max_dead_letter_fraction`."),
        dg.AssetCheckSpec(
            "counterfactuals_are_hard_negatives", asset="counterfactual_trajectories",
            blocking=True,
            description="Style and length: "
            + gate_description(HardNegativeBounds(), "counterfactual", "factual") + ".")],
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
    data_root = settings.data_root_path()
    graph_files = ConceptGraphFiles.under(data_root)
    graph = read_graph(graph_files.graph)
    endpoint = llm.endpoint_config()
    options = _GENERATION.build(config, verifier=_VERIFIER.build(config))
    identity = run_identity(offline_expert.BACKEND if endpoint is None else LLM_BACKEND,
                            endpoint, options, GENERATOR_VERSION)
    studies = cxr_studies[cxr_studies["split"].isin(config.splits)].sort_values("study_id")
    if config.limit is not None:
        studies = studies.head(config.limit)
    has_labels = labelled(studies)
    if not has_labels.all():
        context.log.warning(
            f"{int((~has_labels).sum())} studies have no labeller row and get no trajectories "
            f"(e.g. {studies.loc[~has_labels, 'study_id'].head(3).tolist()})")
    extractor = ConceptExtractor(load_ontology())
    inputs = study_inputs(studies[has_labels])
    # Planned once: the reuse keys are made of the plans, and the studies to generate use them.
    planned = plan_studies(inputs, graph, extractor, options.k)
    plan = plan_reuse(inputs, planned, graph, identity,
                      previous_table(data_root, "counterfactual_trajectories"))
    context.log.info(
        f"{len(plan.keys)} studies: {len(plan.keys) - len(plan.todo)} unchanged since the last "
        f"materialization, {len(plan.todo)} to generate ({plan.retried} retried after a dead "
        f"letter) with the {identity['backend']} expert"
        + (f" ({endpoint.model})" if endpoint else ""))

    counters = RequestCounters()

    def progress(done: int, total: int, counts: RequestCounters) -> None:
        context.log.info(f"LLM expert: {done}/{total} answers; {counts.as_dict()}")

    cache = ResponseCache.under(data_root) if endpoint is not None else None
    todo, parts = plan.todo, []
    try:
        # In chunks, so the log shows progress on a large tree; a chunk is big enough to keep
        # an endpoint saturated (2 requests a study).
        for start in range(0, len(todo), _CHUNK_STUDIES):
            parts.append(generate_trajectories(
                todo[start:start + _CHUNK_STUDIES], graph, extractor, options,
                endpoint=endpoint, cache=cache, counters=counters, on_progress=progress,
                planned=planned))
            context.log.info(f"trajectories: {min(start + _CHUNK_STUDIES, len(todo))}/"
                             f"{len(todo)} studies generated")
    finally:
        if cache is not None:
            cache.close()
    fresh = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=list(TRAJECTORY_COLUMNS)))
    table = assemble(plan, fresh)

    fraction = dead_letter_fraction(table)
    metadata = _metadata(table, counters, len(todo))
    metadata["studies_without_labels"] = int((~has_labels).sum())
    hardness = _hard_negative_check(table, config)
    metadata.update(hardness.metadata)
    return dg.MaterializeResult(
        value=table,
        data_version=dg.DataVersion(content_version(table, "counterfactual_trajectories")),
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name="dead_letters_below_bound",
            passed=fraction <= config.max_dead_letter_fraction,
            description=f"{fraction:.1%} of counterfactuals ended rejected or dead-lettered; the "
            f"bound is {config.max_dead_letter_fraction:.1%} (`max_dead_letter_fraction`, run "
            "config of counterfactual_trajectories). rejection_reasons shows why.",
            metadata={"fraction": round(fraction, 4), "bound": config.max_dead_letter_fraction},
        ), hardness],
    )


def _hard_negative_check(table: pd.DataFrame, config: TrajectoryConfig
                         ) -> dg.AssetCheckResult:
    """The hard-negatives gate (`quality.hard_negative_verdict`) as a blocking check whose
    metadata (also the asset's) carries the classifier's accuracy and the n-grams it reads."""
    bounds = _GATE.build(config)
    verdict = hard_negative_verdict(table, seed_mask(), bounds)
    metadata = verdict.metadata()
    metadata["style_top_features"] = dg.MetadataValue.json(metadata["style_top_features"])
    metadata["max_style_accuracy"] = config.max_style_accuracy
    metadata["style_confidence_z"] = config.style_confidence_z
    return dg.AssetCheckResult(
        check_name="counterfactuals_are_hard_negatives", passed=verdict.passed,
        description=f"{verdict.describe('pairs')}; "
        + bounds_description(bounds, "counterfactual_trajectories", "counterfactual"),
        metadata=metadata)



def _metadata(table: pd.DataFrame, counters: RequestCounters, generated: int) -> dict:
    counts = table.groupby(["kind", "verdict", "expert_backend"]).size().rename("rows")
    return {
        "studies": int(table["study_id"].nunique()),
        "studies_generated_this_run": generated,
        "counterfactuals_by_edit": dg.MetadataValue.json(
            {kind: int(count) for kind, count in edit_kinds(table).value_counts().items()}),
        "rows_by_kind_verdict_backend": dg.MetadataValue.md(
            counts.reset_index().set_index("kind").to_markdown()),
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
