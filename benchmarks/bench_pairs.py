"""Preference data at the paper's CCF scale: the four training sets from 320,416 counterfactuals.

Generates, once, a synthetic `counterfactual_trajectories` table the size of CXR-CounterFact
(160,208 studies, each a factual trajectory and 2 counterfactuals: 320,416 counterfactual and
160,208 factual rows; findings of 25-110 words, 3% of counterfactuals rejected and 0.5% dead
letters, 4% of the factual reports a shared boilerplate text and 1% a near copy of another)
with its `cxr_studies` and `cxr_images` (about 64,000 patients, splits about 98/1/1 by patient
as MIMIC-CXR's), and writes them to Parquet. Then, each in a fresh process so that peak memory
is its own (the Parquet read is in it, but not in the timed figure):

- baseline: bare pandas, the accepted counterfactuals merged with their study's factual and
  the study's image, exact duplicates dropped, and the factual texts merged with their image;
- pipeline: `preference.assembly` — `prepare` (ids, official split and image, answer lines,
  normalised texts), `sft_examples`, `cpo_pairs`, `random_negative_pairs`,
  `diagnosis_only_pairs` — with every filter (not accepted, no text, no image, chosen ==
  rejected, cross-split leakage, exact and near duplicates);

and, not in the pipeline's figure, the gates that read no image (patients, test studies,
chosen != rejected, and the style and length gate on its 2,000-pair sample), and with
`--export` the Hugging Face export of the four sets. Exits non-zero when the pipeline takes
60 s or more or its process peaks at 4 GB or more.

    .venv/bin/python benchmarks/bench_pairs.py [--studies 160208] [--export]
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

import numpy as np
import pandas as pd

TARGET_SECONDS = 60.0
TARGET_BYTES = 4 * 1024**3
_SENTENCES = (
    "The lungs are clear.", "There is no focal consolidation.", "No pleural effusion.",
    "No pneumothorax is seen.", "The cardiomediastinal silhouette is within normal limits.",
    "Heart size is normal.", "Mild pulmonary vascular congestion is present.",
    "There is a small left pleural effusion.", "Bibasilar atelectasis is noted.",
    "The heart is mildly enlarged.", "Patchy opacity in the right lower lobe.",
    "A right internal jugular catheter terminates in the mid SVC.",
    "Degenerative changes are seen in the thoracic spine.", "The osseous structures are intact.",
    "Lung volumes are low.", "There is moderate pulmonary edema.",
    "Interval improvement of the left basilar opacity.", "A 1.5 cm nodule in the right upper lobe.",
    "Surgical clips project over the upper abdomen.", "Aortic knob calcification is noted.",
    "The endotracheal tube is 4 cm above the carina.", "Blunting of the costophrenic angles.",
    "No acute osseous abnormality.", "Hilar contours are unremarkable.",
)
_ANSWERS = ("No Finding", "Pleural Effusion", "Atelectasis", "Cardiomegaly", "Edema",
            "Lung Opacity", "Pneumonia", "Atelectasis and Pleural Effusion",
            "Cardiomegaly, Edema and Pleural Effusion", "Pneumothorax", "Consolidation")
_TARGETS = ("Pneumonia", "Edema", "Pneumothorax", "Pleural Effusion", "Atelectasis",
            "Lung Lesion", "Fracture", "Cardiomegaly", "No Finding")


def _texts(findings: np.ndarray, answers: np.ndarray) -> list[str]:
    return [f"<think> {f} </think> The disease of this patient is {a}."
            for f, a in zip(findings, answers, strict=True)]


def synthetic_tables(studies: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """`counterfactual_trajectories`, `cxr_studies`, `cxr_images` at the given size."""
    rng = np.random.default_rng(seed)
    patients = max(1, int(studies / 2.5))
    subject_ids = 10_000_000 + rng.permutation(9_000_000)[:patients]
    patient_split = rng.choice(["train", "validate", "test"], size=patients, p=[.98, .01, .01])
    owner = np.concatenate([np.arange(min(patients, studies)),
                            rng.integers(0, patients, max(0, studies - patients))])
    study_ids = 50_000_000 + rng.permutation(9_000_000)[:studies]
    dicom_ids = [f"{h[:8]}-{h[8:16]}-{h[16:24]}-{h[24:32]}-{h[32:40]}"
                 for h in (rng.bytes(20).hex() for _ in range(studies))]
    sentences = np.array(_SENTENCES, dtype=object)
    counts = rng.integers(4, 15, studies)  # 4-14 sentences: about 25-110 words
    findings = np.array([" ".join(sentences[rng.integers(0, len(sentences), n)])
                         for n in counts], dtype=object)
    boilerplate = rng.random(studies) < 0.04
    findings[boilerplate] = "The lungs are clear. No pleural effusion or pneumothorax."
    near = np.flatnonzero(rng.random(studies) < 0.01)
    findings[near] = [text.upper() + " " for text in findings[rng.integers(0, studies, len(near))]]
    answers = np.array(_ANSWERS, dtype=object)[rng.integers(0, len(_ANSWERS), studies)]
    answers[boilerplate] = "No Finding"
    factual = pd.DataFrame({
        "study_id": study_ids, "subject_id": subject_ids[owner],
        "split": patient_split[owner], "kind": "factual", "source_diagnosis": answers,
        "target_disease": None, "text": _texts(findings, answers), "findings": findings,
        "verdict": "factual", "expert_backend": "report", "expert_model": None,
        "prompt_hash": None})
    parts = [factual]
    first_target = rng.integers(0, len(_TARGETS), studies)
    for slot in range(2):
        targets = np.array(_TARGETS, dtype=object)[(first_target + slot) % len(_TARGETS)]
        edited = findings + " " + sentences[rng.integers(0, len(sentences), studies)]
        verdict = rng.choice(["accepted", "rejected", "dead_letter"], size=studies,
                             p=[.965, .03, .005])
        # The counterfactual's answer names its target, never the factual's answer.
        answer = np.where(targets == answers, "Fracture", targets)
        text = pd.Series(_texts(edited, answer), dtype=object)
        text[verdict == "dead_letter"] = None
        parts.append(pd.DataFrame({
            "study_id": study_ids, "subject_id": subject_ids[owner],
            "split": patient_split[owner], "kind": "counterfactual",
            "source_diagnosis": answers, "target_disease": targets, "text": text,
            "findings": edited, "verdict": verdict, "expert_backend": "openai-compatible",
            "expert_model": "medical-llm", "prompt_hash": "0123456789abcdef"}))
    trajectories = pd.concat(parts, ignore_index=True)
    trajectories["edits"] = '[{"op": "replace", "before": "x", "after": "y"}]'
    cxr_studies = pd.DataFrame({
        "study_id": study_ids, "subject_id": subject_ids[owner], "split": patient_split[owner],
        "dicom_id": dicom_ids, "image_path": [f"/data/images/{d[:2]}/{d}.png" for d in dicom_ids]})
    cxr_images = pd.DataFrame({"dicom_id": dicom_ids,
                               "image_sha256": [rng.bytes(32).hex() for _ in range(studies)]})
    return {"counterfactual_trajectories": trajectories, "cxr_studies": cxr_studies,
            "cxr_images": cxr_images}


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _read(root: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(root / f"{name}.parquet") for name in
            ("counterfactual_trajectories", "cxr_studies", "cxr_images")}


def _baseline(tables: dict[str, pd.DataFrame], _: dict) -> dict[str, int]:
    trajectories = tables["counterfactual_trajectories"]
    images = tables["cxr_studies"].merge(tables["cxr_images"], on="dicom_id")
    factual = trajectories.loc[trajectories["kind"] == "factual", ["study_id", "text"]]
    accepted = trajectories[(trajectories["kind"] == "counterfactual")
                            & (trajectories["verdict"] == "accepted")]
    pairs = accepted.merge(factual, on="study_id", suffixes=("_rejected", "_chosen")).merge(
        images, on="study_id", suffixes=("", "_study"))
    pairs = pairs.drop_duplicates(["split", "text_chosen", "text_rejected"])
    sft = factual.merge(images, on="study_id").drop_duplicates(["split", "text"])
    return {"sft": len(sft), "pairs": len(pairs)}


def _pipeline(tables: dict[str, pd.DataFrame], options: dict) -> dict[str, object]:
    from cpo_pipeline.preference import assembly
    from cpo_pipeline.preference.checks import (
        chosen_differs_from_rejected,
        no_patient_in_two_splits,
        no_test_study_in_training,
        pairs_are_hard_negatives,
    )
    from cpo_pipeline.preference.prompt import DEFAULT_REQUEST

    versions = assembly.InputVersions("trajectories", "studies", "images")
    stages: dict[str, tuple[float, int]] = {}
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        stages[name] = (now - started, _peak_rss())
        started = now

    prepared = assembly.prepare(tables["counterfactual_trajectories"], tables["cxr_studies"],
                                tables["cxr_images"], versions)
    lap("prepare")
    sft = assembly.sft_examples(prepared, DEFAULT_REQUEST)
    lap("sft_examples")
    cpo = assembly.cpo_pairs(prepared, DEFAULT_REQUEST)
    lap("cpo_pairs")
    random = assembly.random_negative_pairs(cpo.frame, sft.frame, seed=0)
    lap("random_negative_pairs")
    answers = assembly.diagnosis_only_pairs(cpo.frame)
    lap("diagnosis_only_pairs")
    assembled = sum(seconds for seconds, _ in stages.values())
    assembled_rss = _peak_rss()
    official = tables["cxr_studies"].set_index("study_id")["split"]
    for frame in (sft.frame, cpo.frame, random.frame, answers.frame):
        no_patient_in_two_splits(frame)
        no_test_study_in_training(frame, official)
    for frame in (cpo.frame, random.frame, answers.frame):
        chosen_differs_from_rejected(frame)
    lap("gates: patients, test studies, chosen != rejected")
    hardness = pairs_are_hard_negatives(cpo.frame)
    lap("gate: style and length (2,000-pair sample)")
    if options["export"]:
        from cpo_pipeline.preference.export import export_set

        with tempfile.TemporaryDirectory() as folder:
            for name, result in (("sft_dataset", sft), ("preference_pairs", cpo),
                                 ("random_negative_pairs", random),
                                 ("diagnosis_only_pairs", answers)):
                export_set(result.frame, name, Path(folder), f"# {name}\n")
        lap("export: four sets to Hugging Face datasets")
    return {"read_rss": options["read_rss"], "sft": len(sft.frame), "pairs": len(cpo.frame),
            "random": len(random.frame),
            "diagnosis_only": len(answers.frame), "assembled_s": assembled,
            "assembled_rss": assembled_rss, "stages": stages,
            "filters": {"sft_dataset": sft.filters, "preference_pairs": cpo.filters,
                        "random_negative_pairs": random.filters,
                        "diagnosis_only_pairs": answers.filters},
            "style": hardness.metadata["style_accuracy"]}


def _timed(name: str, root: Path, options: dict, queue: mp.Queue) -> None:
    tables = _read(root)
    options = {**options, "read_rss": _peak_rss()}
    run = {"pipeline": _pipeline, "baseline": _baseline}[name]
    if name == "pipeline":  # imports are not part of the figure
        for module in ("cpo_pipeline.preference.assembly", "cpo_pipeline.preference.checks"):
            importlib.import_module(module)
    started = time.perf_counter()
    result = run(tables, options)
    elapsed = time.perf_counter() - started
    queue.put((elapsed, _peak_rss(), result))


def measure(name: str, root: Path, options: dict) -> tuple[float, int, dict]:
    """Run one variant in a fresh process (spawned, so its peak memory is its own)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_timed, args=(name, root, options, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=1)
            break
        except Empty:
            if not process.is_alive():
                raise SystemExit(f"the {name} process failed (exit code {process.exitcode})")
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=160_208)
    parser.add_argument("--export", action="store_true",
                        help="also time the Hugging Face export (not in the pipeline figure)")
    args = parser.parse_args()
    options = {"export": args.export}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        tables = synthetic_tables(args.studies)
        for name, frame in tables.items():
            frame.to_parquet(root / f"{name}.parquet", index=False)
        trajectories = tables["counterfactual_trajectories"]
        kinds = trajectories["kind"].value_counts()
        print(f"generated {args.studies:,} studies: {kinds.get('counterfactual', 0):,} "
              f"counterfactual + {kinds.get('factual', 0):,} factual trajectories (mean "
              f"{trajectories['text'].str.len().mean():.0f} characters), "
              f"{tables['cxr_studies']['subject_id'].nunique():,} patients, splits "
              f"{tables['cxr_studies']['split'].value_counts().to_dict()} in "
              f"{time.perf_counter() - started:.1f} s")
        del tables, trajectories
        one, five, _ = os.getloadavg()
        print(f"load average {one:.2f} {five:.2f} on {os.cpu_count()} cores")
        base_s, base_rss, base = measure("baseline", root, options)
        pipe_s, pipe_rss, pipe = measure("pipeline", root, options)
    print(f"{'':<46}{'wall s':>8}{'peak RSS':>11}   rows")
    print(f"{'baseline: bare pandas join + exact dedup':<46}{base_s:>8.1f}"
          f"{base_rss / 1024**3:>8.2f} GB   sft {base['sft']:,}, pairs {base['pairs']:,}")
    print(f"{'pipeline: four sets with every filter':<46}{pipe['assembled_s']:>8.1f}"
          f"{pipe['assembled_rss'] / 1024**3:>8.2f} GB   sft {pipe['sft']:,}, "
          f"pairs {pipe['pairs']:,}, random {pipe['random']:,}, "
          f"diagnosis-only {pipe['diagnosis_only']:,}")
    print(f"  {'stage':<54}{'wall s':>8}{'peak RSS so far':>17}")
    print(f"  {'(the Parquet read, not timed)':<54}{'':>8}"
          f"{pipe['read_rss'] / 1024**3:>14.2f} GB")
    for stage, (seconds, peak) in pipe["stages"].items():
        print(f"  {stage:<54}{seconds:>8.1f}{peak / 1024**3:>14.2f} GB")
    for name, counts in pipe["filters"].items():
        print(f"{name} filters: {counts}")
    print(f"ratio pipeline / baseline: {pipe['assembled_s'] / base_s:.1f}x; targets: pipeline "
          f"< {TARGET_SECONDS:.0f} s and < {TARGET_BYTES / 1024**3:.0f} GB (peak RSS of its "
          "process up to the end of the assembly, the Parquet read included)")
    print(f"the pipeline's process with the gates{' and the export' if args.export else ''}: "
          f"{pipe_s:.1f} s, peak RSS {pipe_rss / 1024**3:.2f} GB")
    if pipe["assembled_s"] >= TARGET_SECONDS or pipe["assembled_rss"] >= TARGET_BYTES:
        print("TARGET NOT MET")
        sys.exit(1)


if __name__ == "__main__":
    main()
