"""Concept graph: time the data-derived part over MIMIC-CXR's 227,835 studies.

Generates synthetic findings texts with labels (the demo generator's `sample_labels` and
`write_findings`, so every text reads back as its labels), then times what the concept_graph
asset does with them:

- mention extraction: every attribute and location, with negation and uncertainty
  (`concept_presence`, in `--workers` processes);
- statistics: lift, Wilson interval and npmi for every attribute x label and label x label pair,
  and the edges they support (`learned_edges`);
- the graph: seed plus learned edges, as a networkx graph (`build_concept_graph`).

Target: the total under 3 minutes on this machine. Generating the texts is not timed (and is
itself about a minute); they are cached in a Parquet file keyed by seed and count, so a rerun
only times the build.

    python benchmarks/bench_concept_graph.py [--studies 227835] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.mentions import concept_presence
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.concepts.statistics import label_presence, learned_edges
from cpo_pipeline.demo.reports import sample_labels, write_findings
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

MIMIC_CXR_STUDIES = 227_835
TARGET_S = 180.0
_GENERATION_CHUNK = 10_000


def _generate_chunk(seed: np.random.SeedSequence, count: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        labels = sample_labels(rng)
        rows.append({**labels, "findings_text": write_findings(labels, rng)})
    return pd.DataFrame(rows, columns=[*CHEXPERT_LABELS, "findings_text"])


def synthetic_studies(count: int, seed: int, workers: int, cache_dir: Path) -> pd.DataFrame:
    """`count` labelled findings texts, from the cache when an earlier run made them."""
    path = cache_dir / f"cpo-bench-concepts-seed{seed}-{count}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    sizes = [min(_GENERATION_CHUNK, count - start) for start in range(0, count, _GENERATION_CHUNK)]
    # One child seed per chunk: the texts do not depend on how many processes made them.
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        chunks = pool.starmap(_generate_chunk, zip(seeds, sizes, strict=True))
    studies = pd.concat(chunks, ignore_index=True).astype(dict.fromkeys(CHEXPERT_LABELS, "float32"))
    studies.to_parquet(path)
    return studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=MIMIC_CXR_STUDIES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()

    started = time.perf_counter()
    studies = synthetic_studies(args.studies, args.seed, args.workers, args.cache_dir)
    print(f"{len(studies):,} synthetic studies ready in {time.perf_counter() - started:.1f} s "
          f"(cached under {args.cache_dir})")

    ontology = load_ontology()
    timings = {}
    start = time.perf_counter()
    concepts = concept_presence(studies["findings_text"].tolist(), ontology, args.workers)
    timings["mention extraction"] = time.perf_counter() - start
    start = time.perf_counter()
    labels = label_presence(studies)
    pairs, edges = learned_edges(concepts, labels, ontology)
    timings["statistics and edges"] = time.perf_counter() - start
    start = time.perf_counter()
    graph = build_concept_graph(ontology, edges,
                                {**concepts.sum().to_dict(), **labels.sum().to_dict()})
    timings["graph"] = time.perf_counter() - start
    total = sum(timings.values())

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, "
          f"{args.workers} workers")
    for stage, seconds in timings.items():
        print(f"  {stage:<22} {seconds:7.1f} s")
    print(f"  {'total':<22} {total:7.1f} s   target < {TARGET_S:.0f} s "
          f"({'met' if total < TARGET_S else 'MISSED'}), "
          f"{len(studies) / total:,.0f} studies/s")
    relations = pd.Series([edge.relation for edge in edges]).value_counts().to_dict()
    print(f"{len(pairs):,} pairs scored, {len(edges):,} learned edges {relations}, "
          f"graph of {graph.number_of_nodes()} nodes and {graph.number_of_edges()} edges")


if __name__ == "__main__":
    main()
