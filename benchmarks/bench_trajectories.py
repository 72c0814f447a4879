"""counterfactual_trajectories over 10,000 studies against a local OpenAI-compatible server.

Writes a synthetic `cxr_studies` table (findings written from sampled CheXpert labels) and the
seed concept graph under a temporary data root, then materializes the real
`counterfactual_trajectories` asset once with the offline concept-graph expert (for its
throughput), then three times with the LLM expert pointed at `OpenAICompatibleServer`
(answering instantly with a scripted radiologist):

1. cold: every counterfactual is requested (fills the durable response cache);
2. fully cached re-run: unchanged studies keep their rows — the target is 0 requests in < 20 s;
3. re-run without the previous table: every row is recomputed, every answer comes from the
   response cache (0 requests) — the crash-resume path.

Prints requests and wall seconds of each beside the target.

    .venv/bin/python benchmarks/bench_trajectories.py [--studies 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from bench_support import asset_definitions, clean_environment, materialize

TARGET_SECONDS = 20.0


def synthetic_studies(count: int, seed: int = 0) -> pd.DataFrame:
    from cpo_pipeline.demo.reports import sample_labels, write_findings
    from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        labels = sample_labels(rng)
        rows.append({
            "subject_id": 10_000_000 + index, "study_id": 50_000_000 + index, "split": "train",
            "dicom_id": f"{index:08x}-00000000-00000000-00000000-00000000",
            "view_position": "PA", "lateral_only": False, "n_images": 1,
            "image_path": f"/images/{index}.png", "findings_text": write_findings(labels, rng),
            "findings_source": "findings", **{name: labels[name] for name in CHEXPERT_LABELS},
            "label_source": "chexpert", "study_datetime": pd.Timestamp("2150-01-01"),
            "visit_index": 0, "stage": 0,
        })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000)
    args = parser.parse_args()
    clean_environment()

    from cpo_pipeline.concepts.graph import ConceptGraphFiles, build_concept_graph, write_graph
    from cpo_pipeline.concepts.ontology import load_ontology
    from cpo_pipeline.resources.llm import LLMEndpointResource
    from cpo_pipeline.resources.rooted import rooted_resources
    from cpo_pipeline.schemas import conform
    from cpo_pipeline.storage import table_path, write_parquet
    from cpo_pipeline.testing.openai_server import OpenAICompatibleServer
    from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt

    with tempfile.TemporaryDirectory() as folder, \
            OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        root = Path(folder)
        started = time.perf_counter()
        studies = synthetic_studies(args.studies)
        write_parquet(conform(pa.Table.from_pandas(studies, preserve_index=False), "cxr_studies"),
                      table_path(root, ["cxr_studies"]))
        write_graph(build_concept_graph(load_ontology()), ConceptGraphFiles.under(root).graph)
        print(f"wrote {args.studies:,} synthetic studies and the seed concept graph in "
              f"{time.perf_counter() - started:.1f} s")
        resources = rooted_resources(root, LLMEndpointResource(concurrency=64))
        assets = asset_definitions(("cxr_studies", "concept_graph",
                                    "counterfactual_trajectories"))

        def run(label: str) -> None:
            before = len(server.chat_requests)
            started = time.perf_counter()
            result = materialize(assets, resources, ["counterfactual_trajectories"])
            seconds = time.perf_counter() - started
            sent = len(server.chat_requests) - before
            print(f"{label:<44}{sent:>10,}{seconds:>10.1f}   success={result.success}")

        print(f"{'run':<44}{'requests':>10}{'wall s':>10}")
        run("0 offline concept-graph expert (no endpoint)")
        os.environ.update({"CPO_LLM_BASE_URL": server.base_url, "CPO_LLM_MODEL": "cpo-test-model"})
        run("1 cold (fills the response cache)")
        run("2 fully cached re-run")
        table_path(root, ["counterfactual_trajectories"]).unlink()
        run("3 re-run without the previous table")
        print(f"target: run 2 sends 0 requests and takes < {TARGET_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
