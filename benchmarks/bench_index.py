"""Index handling at full MIMIC-CXR scale: read, validate and join the index tables.

Generates synthetic index tables the size of the real release (377,110 images, 227,835 studies,
65,379 patients) and times, in a fresh process each (imports not timed), (a) the pipeline's index
stage — `read_image_index` + `read_labels` + `join_studies`, with validation of every id, path and
label — and (b) a minimal pandas baseline that only reads the same CSVs and merges them; the two
alternate, `--repeats` times. Prints the median wall time and the peak memory (max RSS) of each,
the ratio pipeline / baseline beside its target (<= 2x), the targets < 15 s and < 2 GB, and the
load average before and after.

    .venv/bin/python benchmarks/bench_index.py [--images 377110 --studies 227835 --patients 65379]
                                               [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cpo_pipeline import mimic_layout
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

TARGET_RATIO = 2.0  # the pipeline's validation may cost at most as much again as the bare read
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
        root / f"{mimic_layout.RECORD_LIST}.gz", index=False, compression=gz)
    study_folder = ("files/p" + pd.Series(study_subject.astype(str)).str[:2] + "/p"
                    + study_subject.astype(str) + "/s" + study_ids.astype(str))
    pd.DataFrame({"subject_id": study_subject, "study_id": study_ids,
                  "path": study_folder + ".txt"}).to_csv(
        root / f"{mimic_layout.STUDY_LIST}.gz", index=False, compression=gz)
    dates = 21000101 + rng.integers(0, 99, images) * 10000 + rng.integers(1, 13, images) * 100 + 1
    pd.DataFrame({
        "dicom_id": dicom_ids, "subject_id": subject, "study_id": study,
        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": views,
        "Rows": 3056, "Columns": 2544, "StudyDate": dates,
        "StudyTime": np.round(rng.uniform(0, 235959, images), 3),
        "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
        "ViewCodeSequence_CodeMeaning": "postero-anterior",
        "PatientOrientationCodeSequence_CodeMeaning": "Erect",
    }).to_csv(root / f"{mimic_layout.METADATA}.gz", index=False, compression=gz)
    patient_split = dict(zip(subject_ids.astype(str), rng.choice(
        list(mimic_layout.SPLITS), size=patients, p=[0.978, 0.008, 0.014])))
    pd.DataFrame({"dicom_id": dicom_ids, "study_id": study, "subject_id": subject,
                  "split": [patient_split[s] for s in subject]}).to_csv(
        root / f"{mimic_layout.SPLIT}.gz", index=False, compression=gz)
    labels = pd.DataFrame({"subject_id": study_subject, "study_id": study_ids})
    for name in CHEXPERT_LABELS:
        labels[name] = rng.choice(["1.0", "0.0", "-1.0", ""], size=studies, p=[.15, .1, .03, .72])
    labels.to_csv(root / f"{mimic_layout.CHEXPERT}.gz", index=False, compression=gz)


def _pipeline() -> Callable[[Path], int]:
    """The pipeline's index stage; imported here, so that only its process loads the package."""
    from cpo_pipeline.ingestion.index import read_image_index
    from cpo_pipeline.ingestion.labels import read_labels
    from cpo_pipeline.ingestion.source import MimicSource
    from cpo_pipeline.ingestion.studies import join_studies

    def run(root: Path) -> int:
        source = MimicSource(root, None, is_demo=False)
        index, _, _ = read_image_index(source)
        labels, _ = read_labels(source)
        # Stand-ins for the image and report stages, which this benchmark does not measure.
        usable = index.assign(image_path=index["dicom_id"] + ".png")
        reports = pd.DataFrame({"study_id": index["study_id"].unique()}).assign(
            findings_text="Lungs are clear.", findings="Lungs are clear.", impression=None)
        return len(join_studies(usable, reports, labels, n_stages=3))

    return run


def _baseline() -> Callable[[Path], int]:
    def run(root: Path) -> int:
        read = {name: pd.read_csv(root / f"{name}.gz") for name in
                (mimic_layout.RECORD_LIST, mimic_layout.METADATA, mimic_layout.SPLIT, mimic_layout.CHEXPERT)}
        images = read[mimic_layout.RECORD_LIST].merge(
            read[mimic_layout.METADATA], on=["dicom_id", "subject_id", "study_id"]).merge(
            read[mimic_layout.SPLIT], on=["dicom_id", "subject_id", "study_id"])
        studies = images.drop_duplicates("study_id").merge(read[mimic_layout.CHEXPERT], on="study_id")
        return len(studies)

    return run


def _timed(name: str, root: Path, queue: mp.Queue) -> None:
    run = {"pipeline": _pipeline, "baseline": _baseline}[name]()
    started = time.perf_counter()
    rows = run(root)
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


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _cpu_seconds_of_others(since: tuple[float, float] | None) -> float | None:
    """CPU seconds all processes but this one and its children used since `since` (a
    `_cpu_clock()` reading); None where /proc/stat is not there."""
    now = _cpu_clock()
    if now is None or since is None:
        return None
    return (now[0] - since[0]) - (now[1] - since[1])


def _cpu_clock() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process and its children)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _, _, irq, softirq, steal = (int(f) for f in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = sum(getattr(resource.getrusage(who), field) for who in
              (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    return busy, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=377_110)
    parser.add_argument("--studies", type=int, default=227_835)
    parser.add_argument("--patients", type=int, default=65_379)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        write_tables(root, args.images, args.studies, args.patients)
        print(f"generated {args.images:,} images / {args.studies:,} studies / {args.patients:,} "
              f"patients of index tables in {time.perf_counter() - started:.1f} s")
        print(f"before the runs: {_load()}")
        runs: dict[str, list[tuple[float, int, int]]] = {"baseline": [], "pipeline": []}
        clock, started = _cpu_clock(), time.perf_counter()
        for _ in range(args.repeats):  # interleaved, so a burst of load hits both alike
            for name, results in runs.items():
                results.append(measure(name, root))
        others = _cpu_seconds_of_others(clock)
        print(f"after the runs:  {_load()}")
        if others is not None:
            share = others / (os.cpu_count() * (time.perf_counter() - started))
            print(f"other processes used {others:.1f} CPU s during the runs ({share:.0%} of the "
                  "machine)" + ("; rerun on an idle machine before quoting these figures"
                                if share > 0.1 else ""))
        print(f"{'':<34}{'median s':>9}{'peak RSS':>11}{'studies':>10}   runs s")
        medians = {}
        for name, label in (("baseline", "baseline: pandas read + merge"),
                            ("pipeline", "pipeline: read, validate, join")):
            seconds = sorted(run[0] for run in runs[name])
            medians[name] = statistics.median(seconds)
            peak = max(run[1] for run in runs[name])
            print(f"{label:<34}{medians[name]:>9.2f}{peak / 1024**3:>8.2f} GB"
                  f"{runs[name][0][2]:>10,}   {' '.join(f'{s:.2f}' for s in seconds)}")
        ratio = medians["pipeline"] / medians["baseline"]
        peak = max(run[1] for run in runs["pipeline"])
        print(f"pipeline / baseline: {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x: "
              f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); pipeline "
              f"{medians['pipeline']:.2f} s (target < {TARGET_SECONDS:.0f} s), peak "
              f"{peak / 1024**3:.2f} GB (target < {TARGET_BYTES / 1024**3:.0f} GB)")


if __name__ == "__main__":
    main()
