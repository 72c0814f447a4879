"""The concept graph as a networkx MultiDiGraph: built from seed and learned edges, saved, reloaded.

Nodes are concept names with `kind`, `group`, `synonyms` and `study_count` (studies in which the
concept was present; 0 when built without data). An edge is one relation as one source asserts it,
keyed `"<relation>/<provenance>"`, so the seed and the data can both vouch for a pair. Symmetric
relations are stored once, in `Ontology.orient` order.

One pair carries one of association / irrelevance / exclusion: where sources disagree, the most
trusted (seed > statistics > llm) wins and the others' edges are dropped and listed in the graph
attribute `dropped_edges`, so a disagreement is visible rather than silently resolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import networkx as nx
import pandas as pd

from cpo_pipeline import data_layout, schemas
from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    ATTRIBUTE,
    DISEASE,
    EXCLUSION,
    PROVENANCES,
    SYMMETRIC_RELATIONS,
    ConceptEdge,
    Ontology,
)
from cpo_pipeline.storage import atomic_target

NODE_COLUMNS = tuple(schemas.CONCEPT_NODES.names)
EDGE_COLUMNS = tuple(schemas.CONCEPT_EDGES.names)


@dataclass(frozen=True)
class ConceptGraphFiles:
    """Where the concept_graph asset keeps its files under the data root."""

    graph: Path
    nodes: Path
    edges: Path
    picture: Path

    @classmethod
    def under(cls, data_root: Path) -> ConceptGraphFiles:
        folder = data_layout.concepts(data_root)
        return cls(folder / "concept_graph.json", folder / "concept_nodes.parquet",
                   folder / "concept_edges.parquet", folder / "concept_graph.png")


def edge_key(relation: str, provenance: str) -> str:
    return f"{relation}/{provenance}"


def build_concept_graph(
    ontology: Ontology,
    edges: Iterable[ConceptEdge] = (),
    study_counts: Mapping[str, int] | None = None,
    **graph_attributes: object,
) -> nx.MultiDiGraph:
    """The graph of every ontology concept, its seed edges and `edges` (learned or extracted).

    `graph_attributes` (e.g. the number of studies, the thresholds) are stored on the graph and
    travel with its JSON. Raises ValueError for an edge naming an unknown concept or asserted
    twice by the same source.
    """
    study_counts = study_counts or {}
    graph = nx.MultiDiGraph(seed_sha256=ontology.sha256, **graph_attributes)
    for concept in ontology.concepts:
        graph.add_node(concept.name, kind=concept.kind, group=concept.group,
                       synonyms=list(concept.synonyms),
                       study_count=int(study_counts.get(concept.name, 0)))
    kept, dropped = _resolve_disagreements([*ontology.edges, *edges])
    for edge in kept:
        for end in (edge.source, edge.target):
            if end not in graph:
                raise ValueError(f"edge {edge.source!r} -> {edge.target!r} ({edge.relation}, "
                                 f"{edge.provenance}) names {end!r}, which is not in the ontology")
        key = edge_key(edge.relation, edge.provenance)
        if graph.has_edge(edge.source, edge.target, key):
            raise ValueError(f"{edge.provenance} asserts {edge.relation} between {edge.source!r} "
                             f"and {edge.target!r} twice; merge its evidence into one edge")
        attributes = asdict(edge)
        del attributes["source"], attributes["target"]
        graph.add_edge(edge.source, edge.target, key=key, **attributes)
    graph.graph["dropped_edges"] = dropped
    return graph


def _resolve_disagreements(edges: list[ConceptEdge]) -> tuple[list[ConceptEdge], list[dict]]:
    by_pair: dict[frozenset[str], list[ConceptEdge]] = {}
    for edge in edges:
        if edge.relation in SYMMETRIC_RELATIONS:
            by_pair.setdefault(frozenset((edge.source, edge.target)), []).append(edge)
    losers: set[int] = set()
    dropped = []
    for claims in by_pair.values():
        if len({edge.relation for edge in claims}) < 2:
            continue
        winner = min(claims, key=lambda edge: PROVENANCES.index(edge.provenance))
        for edge in claims:
            if edge.relation != winner.relation:
                losers.add(id(edge))
                dropped.append({
                    "source": edge.source, "target": edge.target, "relation": edge.relation,
                    "provenance": edge.provenance,
                    "reason": f"{winner.provenance} says {winner.relation}",
                })
    dropped.sort(key=lambda row: (row["source"], row["target"], row["relation"], row["provenance"]))
    return [edge for edge in edges if id(edge) not in losers], dropped


def to_node_link(graph: nx.MultiDiGraph) -> dict:
    """The graph as networkx node-link data (JSON-ready, edges under "edges")."""
    return nx.node_link_data(graph, edges="edges")


def from_node_link(data: Mapping) -> nx.MultiDiGraph:
    """The inverse of `to_node_link`."""
    return nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")


def graph_json(graph: nx.MultiDiGraph) -> bytes:
    """The node-link JSON, byte-for-byte the same for the same graph (keys sorted)."""
    return json.dumps(to_node_link(graph), sort_keys=True, indent=1, ensure_ascii=False).encode()


def write_graph(graph: nx.MultiDiGraph, path: Path) -> bytes:
    """Write the node-link JSON atomically; returns the bytes written (to hash them)."""
    content = graph_json(graph)
    with atomic_target(path) as tmp:
        tmp.write_bytes(content)
    return content


def read_graph(path: Path) -> nx.MultiDiGraph:
    """Load a graph written by `write_graph`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: materialize the concept_graph asset "
                                "first") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a concept graph (invalid JSON at line {error.lineno}: "
                         f"{error.msg})") from error
    return from_node_link(data)


def same_graph(first: nx.MultiDiGraph, second: nx.MultiDiGraph) -> bool:
    """Whether two graphs have the same nodes, edges (with keys) and attributes, in any order."""
    return nx.utils.graphs_equal(first, second)


def node_table(graph: nx.MultiDiGraph) -> pd.DataFrame:
    """One row per concept, in graph order."""
    return pd.DataFrame(
        [{"name": name, **{column: data[column] for column in NODE_COLUMNS[1:]}}
         for name, data in graph.nodes(data=True)],
        columns=list(NODE_COLUMNS),
    )


def edge_table(graph: nx.MultiDiGraph) -> pd.DataFrame:
    """One row per edge, in graph order."""
    return pd.DataFrame(
        [{"source": source, "target": target, **{c: data.get(c) for c in EDGE_COLUMNS[2:]}}
         for source, target, data in graph.edges(data=True)],
        columns=list(EDGE_COLUMNS),
    )


def diseases_without_association(graph: nx.MultiDiGraph) -> list[str]:
    """Diseases no association edge touches (each should have at least one)."""
    return [
        name for name, kind in graph.nodes(data="kind")
        if kind == DISEASE and not any(
            data["relation"] == ASSOCIATION
            for _, _, data in (*graph.out_edges(name, data=True), *graph.in_edges(name, data=True))
        )
    ]


def associated_and_excluded(graph: nx.MultiDiGraph) -> list[tuple[str, str]]:
    """Pairs carrying both an association and an exclusion edge (there should be none)."""
    relations: dict[tuple[str, str], set[str]] = {}
    for source, target, relation in graph.edges(data="relation"):
        relations.setdefault(tuple(sorted((source, target))), set()).add(relation)
    return sorted(pair for pair, found in relations.items() if {ASSOCIATION, EXCLUSION} <= found)


def edges_without_provenance(graph: nx.MultiDiGraph) -> list[tuple[str, str, str]]:
    """Edges whose provenance is missing or not one of seed / statistics / llm."""
    return [(source, target, key) for source, target, key, provenance
            in graph.edges(keys=True, data="provenance") if provenance not in PROVENANCES]


def strongest_associations(graph: nx.MultiDiGraph, per_disease: int = 3) -> pd.DataFrame:
    """Per disease, its `per_disease` heaviest associated attributes as "term (weight, source)"."""
    rows = {}
    for disease, kind in graph.nodes(data="kind"):
        if kind != DISEASE:
            continue
        edges = [
            (data["weight"], other, data["provenance"])
            for source, target, data in (*graph.out_edges(disease, data=True),
                                         *graph.in_edges(disease, data=True))
            for other in [target if source == disease else source]
            if data["relation"] == ASSOCIATION and graph.nodes[other]["kind"] == ATTRIBUTE
        ]
        best: dict[str, tuple[float, str]] = {}
        for weight, other, provenance in edges:
            if other not in best or weight > best[other][0]:
                best[other] = (weight, provenance)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:per_disease]
        rows[disease] = [f"{name} ({weight:.2f}, {provenance})"
                         for name, (weight, provenance) in ranked]
        rows[disease] += [""] * (per_disease - len(rows[disease]))
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=[f"#{rank}" for rank in range(1, per_disease + 1)])
    frame.index.name = "disease"
    return frame
