"""Counterfactual quality (issue 9): how hard a negative each expert's counterfactuals are.

Writes a synthetic MIMIC-CXR tree (`write_demo_tree`, tiny images: none of these figures reads
pixels) under a temporary folder, then materializes the real assets with resources rooted at a
temporary data root: `cxr_studies` and `concept_graph` from the tree, `counterfactual_trajectories`
with the offline concept-graph expert, then `counterfactual_trajectories` again with the LLM
expert pointed at `OpenAICompatibleServer` answering as the scripted radiologist. For each
expert it prints `quality_report`'s figures beside the figure before issue 9's fixes and
issue 9's targets, marked met or not met:
style accuracy (and the n-grams that give the counterfactual away), the length ratio and
longer-share, contradictions, answer-line agreement, acceptance and the share of targets per
disease. The trajectories asset's blocking dead-letter check may fail; its table is measured
all the same and the check's outcome is printed.

    .venv/bin/python benchmarks/bench_counterfactual_quality.py [--patients 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench_support import asset_definitions, clean_environment, materialize

if TYPE_CHECKING:
    import dagster as dg

# Tiny images: the phantom's cost grows with the pixels, and only text is measured here.
IMAGE_SIZE = (32, 28)


# The figures before issue 9's fixes (1,000 patients, seed 0, same measurement), printed beside
# each run's: the appended "consistent with" sentence, contradictions, two labellers.
BEFORE = {
    "offline concept-graph expert": {
        "style accuracy": "1.000", "length ratio (median)": "1.38", "counterfactual longer": "91.4%",
        "contradictions": "756", "answer-line agreement": "81.7%", "acceptance rate": "99.5%",
        "least-targeted disease share": "0.0%"},
    "scripted LLM expert": {
        "style accuracy": "1.000", "length ratio (median)": "1.04", "counterfactual longer": "51.0%",
        "contradictions": "1392", "answer-line agreement": "91.9%", "acceptance rate": "100.0%",
        "least-targeted disease share": "0.0%"},
}


def _timed_run(assets: list[dg.AssetsDefinition], resources: dict,
               selection: list[str]) -> tuple[bool, dict[str, bool], float]:
    """Success, each asset check's outcome and the wall seconds: a failed blocking check still
    leaves a table to measure, so the run does not raise."""
    started = time.perf_counter()
    result = materialize(assets, resources, selection, log_level="ERROR", raise_on_error=False)
    checks = {evaluation.check_name: evaluation.passed
              for evaluation in result.get_asset_check_evaluations()}
    return result.success, checks, time.perf_counter() - started


def _format(figure: str, value: float | None, report) -> str:
    if value is None:
        return "n/a"
    if figure == "style accuracy":
        return f"{value:.3f}"
    if figure == "length ratio (median)":
        return (f"{value:.2f} ({report.length.mean_counterfactual_words:.1f} vs "
                f"{report.length.mean_factual_words:.1f} words)")
    if figure == "contradictions":
        return f"{int(value)} of {report.contradictions.checked}"
    if figure == "answer-line agreement":
        return f"{value:.1%} ({report.answer_line.agreeing} of {report.answer_line.checked})"
    if figure == "acceptance rate":
        return f"{value:.1%} ({report.accepted_rows} of {report.counterfactual_rows})"
    if figure == "least-targeted disease share":
        least = min(report.target_shares, key=report.target_shares.get)
        return f"{value:.1%} ({least})"
    return f"{value:.1%}"


def print_report(expert: str, report, checks, asset: dict) -> None:
    from cpo_pipeline.counterfactuals.quality import QualityTargets

    print(f"\n== {expert}: {report.studies:,} studies, {report.factual_rows:,} factual and "
          f"{report.counterfactual_rows:,} counterfactual rows; run success={asset['success']}, "
          f"checks {asset['checks']}, {asset['seconds']:.1f} s")
    print(f"{'figure':<30}{'measured':<36}{'before':<9}{'target':<10}status")
    for check in checks:
        before = BEFORE.get(expert, {}).get(check.figure, "")
        print(f"{check.figure:<30}{_format(check.figure, check.value, report):<36}"
              f"{before:<9}{check.target:<10}{'met' if check.met else 'NOT MET'}")
    style = report.style
    print(f"style: {style.pairs:,} pairs, {style.folds} patient-grouped folds; top features "
          "(+ marks the counterfactual):")
    for feature, weight in style.top_features:
        print(f"    {weight:+.3f}  {feature}")
    print("contradictions by reason:")
    for reason, count in report.contradictions.reasons.items():
        print(f"    {count:>5}  {reason}")
    print(f"    (the same rule finds {report.contradictions.factual_count} among their factual "
          "texts)")
    answer_line = report.answer_line
    if answer_line.examples:
        print(f"answer lines that disagree: named beyond the expectation {answer_line.extra}; "
              f"expected and not named {answer_line.missing}; e.g. (study, expected, named) "
              + "; ".join(f"{study} {list(expected)} {list(named)}"
                          for study, expected, named in answer_line.examples[:3]))
    bound = QualityTargets().min_target_share
    if report.deletion_share is not None:
        print(f"deletions (target No Finding): {report.deletion_share:.1%} of counterfactual rows")
    print(f"targets per disease (share of the counterfactual rows aimed at a disease; target >= "
          f"{bound:.0%} each):")
    for disease, share in report.target_shares.items():
        print(f"    {disease:<28}{share:>7.1%}  {'met' if share >= bound else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    clean_environment()

    from cpo_pipeline.concepts.ontology import load_ontology
    from cpo_pipeline.counterfactuals.quality import check_targets, quality_report
    from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
    from cpo_pipeline.resources.llm import LLMEndpointResource
    from cpo_pipeline.resources.rooted import rooted_resources
    from cpo_pipeline.storage import read_parquet, table_path
    from cpo_pipeline.testing.openai_server import OpenAICompatibleServer
    from cpo_pipeline.testing.scripted_expert import answer_counterfactual_prompt

    assets = asset_definitions(("cxr_studies", "concept_graph", "counterfactual_trajectories"))
    total = time.perf_counter()
    ontology = load_ontology()
    seconds: dict[str, float] = {}
    experts: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder, \
            OpenAICompatibleServer(responder=answer_counterfactual_prompt) as server:
        tree, root = Path(folder) / "mimic-cxr", Path(folder) / "data"
        started = time.perf_counter()
        summary = write_demo_tree(tree, DemoConfig(patients=args.patients, seed=args.seed,
                                                   image_size=IMAGE_SIZE))
        seconds["demo tree"] = time.perf_counter() - started
        print(f"demo tree: {summary.patients:,} patients, {summary.studies:,} studies, "
              f"{summary.images:,} images ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}) in "
              f"{seconds['demo tree']:.1f} s")

        def resources(llm: LLMEndpointResource) -> dict:
            return rooted_resources(root, llm, mimic_cxr_root=str(tree))

        success, checks, seconds["ingestion and concept graph"] = _timed_run(
            assets, resources(LLMEndpointResource()), ["cxr_studies", "concept_graph"])
        print(f"cxr_studies and concept_graph: success={success}, checks {checks}, "
              f"{seconds['ingestion and concept graph']:.1f} s")
        if not success:
            raise SystemExit("ingestion or the concept graph failed; nothing to measure")

        llm_expert = LLMEndpointResource(base_url=server.base_url, model="scripted-expert",
                                         concurrency=64)
        for expert, llm in (("offline concept-graph expert", LLMEndpointResource()),
                            ("scripted LLM expert", llm_expert)):
            success, checks, generation = _timed_run(
                assets, resources(llm), ["counterfactual_trajectories"])
            seconds[f"trajectories, {expert}"] = generation
            table = read_parquet(table_path(root, ["counterfactual_trajectories"])).to_pandas()
            started = time.perf_counter()
            report = quality_report(table, ontology)
            seconds[f"quality report, {expert}"] = time.perf_counter() - started
            targets = check_targets(report)
            asset = {"success": success, "checks": checks, "seconds": generation}
            print_report(expert, report, targets, asset)
            experts[expert] = {"asset": asset, "report": dataclasses.asdict(report),
                               "targets": [dataclasses.asdict(check) for check in targets]}
    seconds["total"] = time.perf_counter() - total
    print("\nwall seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in seconds.items()))
    if args.json:
        args.json.write_text(json.dumps(
            {"patients": args.patients, "seed": args.seed, "studies": summary.studies,
             "seconds": seconds, "experts": experts}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
