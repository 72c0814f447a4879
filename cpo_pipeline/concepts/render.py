"""A picture of the concept graph for the Dagster UI: diseases inside, attributes around them.

Association edges are teal and exclusion edges red, darker for heavier weights; irrelevance
edges and locations are left out, since they would cover everything else. Attributes are
coloured by category. The layout is a fixed pair of circles, so the same graph gives the same
picture.
"""

from __future__ import annotations

import io

import networkx as nx
from PIL import Image

from cpo_pipeline.concepts.ontology import (
    ASSOCIATION,
    ATTRIBUTE,
    ATTRIBUTE_CATEGORIES,
    DISEASE,
    EXCLUSION,
    OBSERVATION,
)

_CATEGORY_COLOURS = dict(zip(ATTRIBUTE_CATEGORIES, ("#1f77b4", "#e377c2", "#ff7f0e", "#2ca02c"),
                             strict=True))
_DISEASE_COLOUR = "#8c1c13"
_OBSERVATION_COLOUR = "#999999"
_RELATION_COLOURS = {ASSOCIATION: "#17becf", EXCLUSION: "#d62728"}


def render_graph_png(graph: nx.MultiDiGraph, dpi: int = 72) -> bytes:
    """The graph's diseases, attributes, association and exclusion edges as a PNG."""
    # Imported here, not at the top: the code location should not load matplotlib to start.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [n for n, kind in graph.nodes(data="kind") if kind in (DISEASE, OBSERVATION, ATTRIBUTE)]
    inner = [n for n in shown if graph.nodes[n]["kind"] != ATTRIBUTE]
    outer = sorted((n for n in shown if graph.nodes[n]["kind"] == ATTRIBUTE),
                   key=lambda n: (ATTRIBUTE_CATEGORIES.index(graph.nodes[n]["group"]), n))
    positions = nx.shell_layout(graph.subgraph(shown), nlist=[inner, outer])
    figure, axes = plt.subplots(figsize=(13, 13))
    try:
        for source, target, data in graph.edges(data=True):
            colour = _RELATION_COLOURS.get(data["relation"])
            if colour is None or source not in positions or target not in positions:
                continue
            (x0, y0), (x1, y1) = positions[source], positions[target]
            axes.plot([x0, x1], [y0, y1], color=colour, alpha=0.15 + 0.6 * data["weight"],
                      linewidth=0.5 + 1.5 * data["weight"], zorder=1)
        for name in shown:
            node = graph.nodes[name]
            colour = {DISEASE: _DISEASE_COLOUR, OBSERVATION: _OBSERVATION_COLOUR}.get(
                node["kind"]) or _CATEGORY_COLOURS[node["group"]]
            x, y = positions[name]
            axes.scatter([x], [y], s=260 if node["kind"] != ATTRIBUTE else 60, color=colour,
                         zorder=2)
            axes.annotate(name, (x, y), fontsize=9 if node["kind"] != ATTRIBUTE else 7,
                          xytext=(4, 4), textcoords="offset points", zorder=3)
        for label, colour in [("disease", _DISEASE_COLOUR), ("observation", _OBSERVATION_COLOUR),
                              *((c.replace("_", " "), _CATEGORY_COLOURS[c])
                                for c in ATTRIBUTE_CATEGORIES)]:
            axes.scatter([], [], color=colour, label=label)
        for relation, colour in _RELATION_COLOURS.items():
            axes.plot([], [], color=colour, label=relation)
        axes.legend(loc="lower left", fontsize=9, frameon=False)
        axes.set_axis_off()
        axes.set_title(f"Concept graph: {len(inner)} diseases and observations, {len(outer)} "
                       "attributes", fontsize=12)
        rendered = io.BytesIO()
        figure.savefig(rendered, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    # A 128-colour palette keeps the PNG small enough to embed in asset metadata (~4x smaller).
    picture = Image.open(rendered).convert("RGB").quantize(
        colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    compact = io.BytesIO()
    picture.save(compact, format="PNG", optimize=True)
    return compact.getvalue()
