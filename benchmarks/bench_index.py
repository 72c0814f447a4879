"""Index handling at full MIMIC-CXR scale: read, validate and join the index tables.

Generates synthetic index tables the size of the real release (377,110 images, 227,835 studies,
65,379 patients) and times, in a fresh process each, (a) the pipeline's index stage —
`read_image_index` + `read_labels` + `join_studies`, with validation of every id, path and
label — and (b) a minimal pandas baseline that only reads the same CSVs and merges them.
Prints wall time and peak memory (max RSS) of each beside the targets: < 15 s and < 2 GB.

    .venv/bin/python benchmarks/bench_index.py [--images 377110 --studies 227835 --patients 65379]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cpo_pipeline import layout
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

TARGET_SECONDS = 15.0
TARGET_BYTES = 2 * 1024**3


def _unique(rng: np.random.Generator, count: int, low: int, high: int) -> np.ndarray:
    values = np.unique(rng.integers(low, high, size=int(count * 1.2)))
    return rng.permutation(values)[:count]


def write_tables(root: Path, images: int, studies: int, patients: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    subject_ids = _unique(rng, patients, 10_000_000, 20_000_000)
    study_ids = _unique(rng, studies, 50_000_000, 60_000_000)
    study_subject = subject_ids[np.concatenate(
        [np.arange(patients), rng.integers(0, patients, studies - patients)])]
    image_study = np.concatenate([np.arange(studies), rng.integers(0, studies, images - studies)])
    dicom_ids = ["-".join(h[i:i + 8] for i in range(0, 40, 8))
                 for h in (rng.bytes(20).hex() for _ in range(images))]
    subject = study_subject[image_study].astype(str)
    study = study_ids[image_study].astype(str)
    folder = "files/p" + pd.Series(subject).str[:2] + "/p" + subject + "/s" + study
    views = rng.choice(["PA", "LATERAL", "AP", "LL", ""], size=images, p=[.3, .3, .33, .05, .02])
    gz = {"method": "gzip", "compresslevel": 6, "mtime": 0}
    pd.DataFrame({"subject_id": subject, "study_id": study, "dicom_id": dicom_ids,
                  "path": folder + "/" + pd.Series(dicom_ids) + ".dcm"}).to_csv(
        root / f"{layout.RECORD_LIST}.gz", index=False, compression=gz)
    study_folder = ("files/p" + pd.Series(study_subject.astype(str)).str[:2] + "/p"
                    + study_subject.astype(str) + "/s" + study_ids.astype(str))
    pd.DataFrame({"subject_id": study_subject, "study_id": study_ids,
                  "path": study_folder + ".txt"}).to_csv(
        root / f"{layout.STUDY_LIST}.gz", index=False, compression=gz)
    dates = 21000101 + rng.integers(0, 99, images) * 10000 + rng.integers(1, 13, images) * 100 + 1
    pd.DataFrame({
        "dicom_id": dicom_ids, "subject_id": subject, "study_id": study,
        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": views,
        "Rows": 3056, "Columns": 2544, "StudyDate": dates,
        "StudyTime": np.round(rng.uniform(0, 235959, images), 3),
        "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
        "ViewCodeSequence_CodeMeaning": "postero-anterior",
        "PatientOrientationCodeSequence_CodeMeaning": "Erect",
    }).to_csv(root / f"{layout.METADATA}.gz", index=False, compression=gz)
    patient_split = dict(zip(subject_ids.astype(str), rng.choice(
        list(layout.SPLITS), size=patients, p=[0.978, 0.008, 0.014])))
    pd.DataFrame({"dicom_id": dicom_ids, "study_id": study, "subject_id": subject,
                  "split": [patient_split[s] for s in subject]}).to_csv(
        root / f"{layout.SPLIT}.gz", index=False, compression=gz)
    labels = pd.DataFrame({"subject_id": study_subject, "study_id": study_ids})
    for name in CHEXPERT_LABELS:
        labels[name] = rng.choice(["1.0", "0.0", "-1.0", ""], size=studies, p=[.15, .1, .03, .72])
    labels.to_csv(root / f"{layout.CHEXPERT}.gz", index=False, compression=gz)


def _pipeline(root: Path) -> int:
    from cpo_pipeline.ingestion.index import read_image_index
    from cpo_pipeline.ingestion.labels import read_labels
    from cpo_pipeline.ingestion.source import MimicSource
    from cpo_pipeline.ingestion.studies import join_studies

    source = MimicSource(root, None, is_demo=False)
    index, _, _ = read_image_index(source)
    labels, _ = read_labels(source)
    # Stand-ins for the image and report stages, which this benchmark does not measure.
    usable = index.assign(image_path=index["dicom_id"] + ".png")
    reports = pd.DataFrame({"study_id": index["study_id"].unique()}).assign(
        findings_text="Lungs are clear.", findings="Lungs are clear.", impression=None)
    studies = join_studies(usable, reports, labels, n_stages=3)
    return len(studies)


def _baseline(root: Path) -> int:
    read = {name: pd.read_csv(root / f"{name}.gz") for name in
            (layout.RECORD_LIST, layout.METADATA, layout.SPLIT, layout.CHEXPERT)}
    images = read[layout.RECORD_LIST].merge(
        read[layout.METADATA], on=["dicom_id", "subject_id", "study_id"]).merge(
        read[layout.SPLIT], on=["dicom_id", "subject_id", "study_id"])
    studies = images.drop_duplicates("study_id").merge(read[layout.CHEXPERT], on="study_id")
    return len(studies)


def _timed(name: str, root: Path, queue: mp.Queue) -> None:
    function = {"pipeline": _pipeline, "baseline": _baseline}[name]
    started = time.perf_counter()
    rows = function(root)
    elapsed = time.perf_counter() - started
    queue.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rows))


def measure(name: str, root: Path) -> tuple[float, int, int]:
    """Run one variant in a fresh process (spawned, so its peak memory is its own)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_timed, args=(name, root, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=377_110)
    parser.add_argument("--studies", type=int, default=227_835)
    parser.add_argument("--patients", type=int, default=65_379)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        write_tables(root, args.images, args.studies, args.patients)
        print(f"generated {args.images:,} images / {args.studies:,} studies / {args.patients:,} "
              f"patients of index tables in {time.perf_counter() - started:.1f} s")
        rows = {}
        print(f"{'':<34}{'wall s':>8}{'peak RSS':>11}{'studies':>10}")
        for name, label in (("baseline", "baseline: pandas read + merge"),
                            ("pipeline", "pipeline: read, validate, join")):
            seconds, peak, rows[name] = measure(name, root)
            print(f"{label:<34}{seconds:>8.2f}{peak / 1024**3:>9.2f} GB{rows[name]:>10,}")
        print(f"targets: pipeline < {TARGET_SECONDS:.0f} s and < {TARGET_BYTES / 1024**3:.0f} GB")


if __name__ == "__main__":
    main()
