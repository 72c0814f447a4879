"""concept_graph: the seed ontology, what cxr_studies say about it, and optionally what an LLM
reads in the reports.

The asset's value is a set of files under `<data_root>/concepts/` (see `ConceptGraphFiles`): the
node-link JSON that later stages load with `read_graph`, node and edge Parquet tables for
inspection, and the PNG shown in the UI; with an LLM endpoint, also which reports it was asked
about together (`llm_extraction.REPORT_BATCHES_FILENAME`), so that a refresh asks the earlier
batches again as they were and the response cache answers them. Nothing goes through the IO
manager; the data version is the JSON's content hash. Checks run on the graph as read back from
disk, i.e. on what later stages will see.
"""

from dataclasses import asdict
from pathlib import Path

import dagster as dg
import networkx as nx
import pandas as pd
import pyarrow as pa
from pydantic import Field

from cpo_pipeline import schemas
from cpo_pipeline.concepts.graph import (
    ConceptGraphFiles,
    associated_and_excluded,
    build_concept_graph,
    diseases_without_association,
    edge_table,
    edges_without_provenance,
    node_table,
    read_graph,
    same_graph,
    strongest_associations,
    write_graph,
)
from cpo_pipeline.concepts.llm_extraction import (
    REPORT_BATCHES_FILENAME,
    CompletionUnavailable,
    LlmExtraction,
    ReportBatches,
    extract_with_llm,
    prompt_sha256,
    report_batches,
)
from cpo_pipeline.concepts.mentions import concept_presence
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.concepts.render import render_graph_png
from cpo_pipeline.concepts.statistics import (
    SCORING_VERSION,
    EdgeThresholds,
    label_presence,
    learned_edges,
    normal_studies,
    studies_by_diseases,
)
from cpo_pipeline.llm import client as llm_client
from cpo_pipeline.llm.response_cache import ResponseCache
from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.storage import atomic_target, content_hash, write_parquet
from cpo_pipeline.wiring.launchpad import Offered, launchpad_config
from cpo_pipeline.wiring.metadata import png_markdown

_SEED = load_ontology()
# Changes with the seed file, the scoring rules, the LLM prompt or what the graph records
# of its studies (GRAPH_FORMAT 2: `normal_studies`; 3: `studies_by_diseases`).
GRAPH_FORMAT = "3"
CODE_VERSION = (f"seed-{_SEED.sha256[:12]}.scoring-{SCORING_VERSION}"
                f".prompt-{prompt_sha256(_SEED)[:12]}.format-{GRAPH_FORMAT}")
# The thresholds are EdgeThresholds' fields (their defaults and help live there; the interval's
# confidence stays fixed); the rest is how this asset reads the reports.
_THRESHOLDS = Offered(EdgeThresholds, leave_out=frozenset({"confidence"}))
ConceptGraphConfig = launchpad_config("ConceptGraphConfig", _THRESHOLDS, extra={
    "workers": (int, Field(default=2, description="Processes reading findings texts.")),
    "llm_reports": (int, Field(
        default=256,
        description="Reports sent to the LLM when an endpoint is set: those of earlier runs, in "
        "their batches, then others by study id (on a first run, the first by study id).")),
    "llm_batch_size": (int, Field(
        default=8, description="Reports per LLM request (a change re-forms every batch).")),
    "llm_min_reports": (int, Field(
        default=2,
        description="Reports that must map a feature to a disease before the LLM's edge is "
        "kept.")),
})

_CHECKS = [
    dg.AssetCheckSpec("every_disease_has_an_association", asset="concept_graph", blocking=True,
                      description="Each of the 12 diseases has at least one association edge."),
    dg.AssetCheckSpec("no_pair_associated_and_excluded", asset="concept_graph", blocking=True),
    dg.AssetCheckSpec("every_edge_has_provenance", asset="concept_graph", blocking=True,
                      description="Provenance is seed, statistics or llm."),
    dg.AssetCheckSpec("graph_loads_back_identically", asset="concept_graph", blocking=True,
                      description="The JSON on disk reads back as the graph that was built."),
]


@dg.asset(
    description="Diseases, radiographic attributes and anatomical locations with association / "
    "irrelevance / exclusion edges (weight, support, provenance seed | statistics | llm), "
    "as node-link JSON plus node and edge tables under <data_root>/concepts/.",
    code_version=CODE_VERSION,
    check_specs=_CHECKS,
    group_name="concepts",
)
def concept_graph(
    context: dg.AssetExecutionContext,
    config: ConceptGraphConfig,
    settings: PipelineSettings,
    llm: LLMEndpointResource,
    cxr_studies: pd.DataFrame,
) -> dg.MaterializeResult:
    data_root = settings.resolve().data_root
    thresholds = _THRESHOLDS.build(config)
    texts = cxr_studies["findings_text"].tolist()
    concepts = concept_presence(texts, _SEED, workers=config.workers)
    labels = label_presence(cxr_studies)
    _, learned = learned_edges(concepts, labels, _SEED, thresholds)
    extraction = _read_with_llm(llm, data_root, cxr_studies, config)
    counts = {**concepts.sum().to_dict(), **labels.sum().to_dict()}
    graph = build_concept_graph(
        _SEED, [*learned, *(extraction.edges if extraction else [])], counts,
        studies=len(cxr_studies), normal_studies=normal_studies(cxr_studies),
        studies_by_diseases=studies_by_diseases(cxr_studies),
        thresholds=asdict(thresholds), scoring_version=SCORING_VERSION,
        llm_model=extraction.model if extraction else None,
        llm_skipped_batches=[asdict(s) for s in extraction.skipped] if extraction else [],
    )
    context.log.info(f"{graph.number_of_nodes()} concepts, {graph.number_of_edges()} edges "
                     f"({len(learned)} learned from {len(cxr_studies)} studies)")

    files = ConceptGraphFiles.under(data_root)
    content = write_graph(graph, files.graph)
    nodes, edges = node_table(graph), edge_table(graph)
    write_parquet(schemas.conform(pa.Table.from_pandas(nodes, preserve_index=False),
                                  "concept_nodes"), files.nodes)
    write_parquet(schemas.conform(pa.Table.from_pandas(edges, preserve_index=False),
                                  "concept_edges"), files.edges)
    picture = render_graph_png(graph)
    with atomic_target(files.picture) as tmp:
        tmp.write_bytes(picture)
    reloaded = read_graph(files.graph)

    return dg.MaterializeResult(
        data_version=dg.DataVersion(content_hash(content)),
        metadata={
            "studies": len(cxr_studies),
            "nodes_per_kind": dg.MetadataValue.json(nodes["kind"].value_counts().to_dict()),
            "edges_per_relation_and_provenance": dg.MetadataValue.md(
                pd.crosstab(edges["relation"], edges["provenance"]).to_markdown()),
            "strongest_associations": dg.MetadataValue.md(
                strongest_associations(reloaded).to_markdown()),
            "disagreements_dropped": len(graph.graph["dropped_edges"]),
            "llm": extraction.model if extraction else "off (no CPO_LLM_BASE_URL)",
            **(_llm_metadata(extraction) if extraction else {}),
            "picture": png_markdown(picture, "concept graph"),
            "graph_path": dg.MetadataValue.path(str(files.graph)),
            "nodes_path": dg.MetadataValue.path(str(files.nodes)),
            "edges_path": dg.MetadataValue.path(str(files.edges)),
            "picture_path": dg.MetadataValue.path(str(files.picture)),
        },
        check_results=_checks(graph, reloaded),
    )


def _read_with_llm(llm: LLMEndpointResource, data_root: Path, studies: pd.DataFrame,
                   config: ConceptGraphConfig) -> LlmExtraction | None:
    endpoint = llm.endpoint_config()
    if endpoint is None:
        return None
    texts = studies.set_index("study_id")["findings_text"].sort_index()
    saved = ConceptGraphFiles.under(data_root).graph.with_name(REPORT_BATCHES_FILENAME)
    earlier = ReportBatches.from_json(saved.read_text()) if saved.exists() else None
    batches = report_batches(texts.index.tolist(), config.llm_reports, config.llm_batch_size,
                             earlier)
    with ResponseCache.under(data_root) as cache:

        def complete(messages: list[dict[str, str]]) -> str:
            try:
                return llm_client.complete(endpoint, messages, cache=cache)
            except llm_client.ChatCompletionError as error:
                raise CompletionUnavailable(str(error)) from error

        extraction = extract_with_llm(
            [texts.loc[list(batch)].tolist() for batch in batches.batches], complete, _SEED,
            endpoint.model, config.llm_min_reports)
    with atomic_target(saved) as tmp:
        tmp.write_text(batches.to_json())
    return extraction


def _llm_metadata(extraction: LlmExtraction) -> dict:
    return {
        "llm_batches": extraction.batches,
        "llm_batches_skipped": len(extraction.skipped),
        "llm_skipped": dg.MetadataValue.json([asdict(s) for s in extraction.skipped[:10]]),
        "llm_edges": len(extraction.edges),
        "llm_unmapped_terms": dg.MetadataValue.json(dict(extraction.unmapped.most_common(20))),
    }


def _checks(built: nx.MultiDiGraph, reloaded: nx.MultiDiGraph) -> list[dg.AssetCheckResult]:
    missing = diseases_without_association(reloaded)
    contradictory = associated_and_excluded(reloaded)
    unsourced = edges_without_provenance(reloaded)
    return [
        dg.AssetCheckResult(
            check_name="every_disease_has_an_association", passed=not missing,
            description=f"{len(missing)} diseases have no association edge ({missing[:3]}); the "
            "bound is 0: without one, no counterfactual can be planned toward them. The seed "
            "ontology gives each disease its associations; the statistics add more with lower "
            "`min_support`, `min_cooccurrence` or `association_lift` (run config of "
            "concept_graph).",
            metadata={"diseases_without_association": dg.MetadataValue.json(missing),
                      "bound": 0},
        ),
        dg.AssetCheckResult(
            check_name="no_pair_associated_and_excluded", passed=not contradictory,
            description=f"{len(contradictory)} concept pairs are both associated and excluded "
            f"({[list(p) for p in contradictory[:3]]}); the bound is 0. Learned edges that "
            "contradict each other come from loose thresholds: raise `association_lift` or "
            "lower `exclusion_lift` (run config of concept_graph).",
            metadata={"pairs": dg.MetadataValue.json([list(p) for p in contradictory[:20]]),
                      "contradictory_pairs": len(contradictory), "bound": 0},
        ),
        dg.AssetCheckResult(
            check_name="every_edge_has_provenance", passed=not unsourced,
            description=f"{len(unsourced)} edges lack a provenance of seed, statistics or llm "
            f"({[list(e) for e in unsourced[:3]]}); the bound is 0, and no config option "
            "relaxes it: every edge must say where it came from (a bug in the graph builder).",
            metadata={"edges": dg.MetadataValue.json([list(e) for e in unsourced[:20]]),
                      "edges_without_provenance": len(unsourced), "bound": 0},
        ),
        dg.AssetCheckResult(
            check_name="graph_loads_back_identically", passed=same_graph(built, reloaded),
            description=f"the JSON on disk reads back as {reloaded.number_of_nodes()} nodes and "
            f"{reloaded.number_of_edges()} edges against {built.number_of_nodes()} and "
            f"{built.number_of_edges()} built; the bound is an identical graph, and no config "
            "option relaxes it (later stages read the file): check the data root's disk.",
            metadata={"nodes": reloaded.number_of_nodes(), "edges": reloaded.number_of_edges(),
                      "nodes_built": built.number_of_nodes(),
                      "edges_built": built.number_of_edges()},
        ),
    ]
