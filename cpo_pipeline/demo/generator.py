"""The embedded demo: a synthetic MIMIC-CXR tree in the exact 2.x layout, deterministic for a seed.

Planning (ids, timeline, views, labels, report text) is pure and cheap; writing renders a chest
phantom per image, so pixels depend only on (seed, subject, study, image index) and not on the
order in which images are written.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from cpo_pipeline import mimic_layout
from cpo_pipeline.demo.dicom import describe_view, write_dx_dicom
from cpo_pipeline.demo.phantom import render_chest_phantom
from cpo_pipeline.demo.reports import (
    ReportParts,
    compose_report,
    sample_labels,
    write_report_parts,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, LABEL_POSITIVE

Release = Literal["dicom", "jpg"]

# Study shapes: PA + lateral in the department, a single portable AP on the wards, and a few
# lateral-only studies (which ingestion must keep but mark).
_STUDY_SHAPES = (("PA", "LATERAL"), ("AP",), ("LATERAL",))
_STUDY_SHAPE_WEIGHTS = (0.60, 0.37, 0.03)
_REALISTIC_SIDES = (2500, 3100)
_MISSING_LABEL_ROW_SHARE = 0.02  # studies with no CheXpert row, as in the real tables


@dataclass(frozen=True)
class DemoConfig:
    patients: int = 48
    seed: int = 0
    release: Release = "dicom"
    image_size: tuple[int, int] = (320, 256)
    realistic_size: bool = False
    max_studies_per_patient: int = 5
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    monochrome1_fraction: float = 0.3
    # Non-stationarity for staged tuning: a visit at place c in its patient's course (-1 the
    # first, +1 the last, 0 an only visit) draws its labels with shift drift * c (see
    # `reports.sample_labels`): later visits are sicker. 0: every visit drawn alike.
    drift: float = 0.0


@dataclass(frozen=True)
class DemoImage:
    dicom_id: str
    view_position: str
    rows: int
    cols: int
    photometric: str


@dataclass(frozen=True)
class DemoStudy:
    subject_id: int
    study_id: int
    study_date: int
    study_time: float
    portable: bool
    labels: dict[str, float | None]
    parts: ReportParts
    report: str
    images: tuple[DemoImage, ...]
    has_label_row: bool = True


@dataclass(frozen=True)
class DemoPatient:
    subject_id: int
    split: str
    studies: tuple[DemoStudy, ...] = field(default=())


def _unique_ids(rng: np.random.Generator, count: int, low: int, high: int) -> list[int]:
    ids: set[int] = set()
    while len(ids) < count:
        ids.update(int(x) for x in rng.integers(low, high, size=count - len(ids)))
    return sorted(ids, key=lambda _: rng.random())


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _assign_splits(rng: np.random.Generator, n: int, fractions: Sequence[float]) -> list[str]:
    """Patient-level splits; validate and test get at least one patient each when n >= 3."""
    n_validate = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_validate, n_test = max(1, n_validate), max(1, n_test)
    splits = ["validate"] * n_validate + ["test"] * n_test
    splits += ["train"] * (n - len(splits))
    return [splits[i] for i in rng.permutation(n)]


def _study_time(rng: np.random.Generator) -> float:
    seconds = rng.uniform(0, 86_400)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    # Truncated to the millisecond: rounded, 59.9996 s became a 60th second ("054660"), which
    # the DICOM writer rightly refuses (one study in about 2,000).
    secs = math.floor(secs * 1000) / 1000
    # HHMMSS.fff as the real tables store it: read as a number it loses its leading zero.
    return round(int(hours) * 10_000 + int(minutes) * 100 + secs, 3)


def _image_size(rng: np.random.Generator, config: DemoConfig) -> tuple[int, int]:
    if not config.realistic_size:
        return config.image_size
    rows = int(rng.integers(*_REALISTIC_SIDES))
    cols = int(rows * rng.uniform(0.8, 0.9))
    return rows, cols


def _plan_study(
    rng: np.random.Generator, config: DemoConfig, subject_id: int, study_id: int, date: dt.date,
    course: float = 0.0,
) -> DemoStudy:
    shape = _STUDY_SHAPES[rng.choice(len(_STUDY_SHAPES), p=_STUDY_SHAPE_WEIGHTS)]
    if shape == ("PA", "LATERAL") and rng.random() < 0.1:
        shape = ("PA", "LL")
    photometric = "MONOCHROME1" if rng.random() < config.monochrome1_fraction else "MONOCHROME2"
    images = tuple(
        DemoImage(_dicom_id(rng), view, *_image_size(rng, config), photometric) for view in shape
    )
    labels = sample_labels(rng, config.drift * course)
    parts = write_report_parts(labels, rng)
    return DemoStudy(
        subject_id=subject_id,
        study_id=study_id,
        study_date=int(date.strftime("%Y%m%d")),
        study_time=_study_time(rng),
        portable=shape == ("AP",),
        labels=labels,
        parts=parts,
        report=compose_report(parts, rng, portable=shape == ("AP",)),
        images=images,
        has_label_row=rng.random() >= _MISSING_LABEL_ROW_SHARE,
    )


def plan_demo(config: DemoConfig) -> list[DemoPatient]:
    """Every id, date, view, label and report of the demo tree; no pixels, no I/O."""
    rng = np.random.default_rng(config.seed)
    subject_ids = _unique_ids(rng, config.patients, 10_000_000, 20_000_000)
    splits = _assign_splits(rng, config.patients, config.split_fractions)
    study_counts = np.minimum(rng.geometric(0.45, size=config.patients), config.max_studies_per_patient)
    study_ids = iter(_unique_ids(rng, int(study_counts.sum()), 50_000_000, 60_000_000))
    patients = []
    for subject_id, split, n_studies in zip(subject_ids, splits, study_counts, strict=True):
        # Dates are shifted into 2100-2200 per patient; only their order within a patient means
        # anything, exactly as in the real data.
        date = dt.date(int(rng.integers(2105, 2195)), 1, 1) + dt.timedelta(int(rng.integers(365)))
        studies = []
        for visit in range(int(n_studies)):
            course = (2 * visit + 1) / n_studies - 1  # -1 .. +1 over the patient's visits
            studies.append(_plan_study(rng, config, subject_id, next(study_ids), date, course))
            date += dt.timedelta(days=int(rng.integers(1, 400)))
        patients.append(DemoPatient(subject_id, split, tuple(studies)))
    return patients


def _image_rng(config: DemoConfig, study: DemoStudy, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, study.subject_id, study.study_id, index])


def _official_jpg(pixels: np.ndarray) -> Image.Image:
    """The JPG release's conversion: min-max to 8 bit, histogram equalisation (saved as q95)."""
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels.astype(np.float32) - low) * (255.0 / max(high - low, 1.0))
    return ImageOps.equalize(Image.fromarray(scaled.astype(np.uint8), mode="L"))


def painted(labels: dict[str, float | None]) -> dict[str, float | None]:
    """What the image shows of a study's labels: its positive findings only.

    The answer policy for uncertain findings ("possible small left effusion"): a hedge is not a
    diagnosis, so the answer line leaves it out (`positive_diseases`, CheXpert's U-Zeros
    reading), and the image agrees: the finding is not painted, faintly or otherwise. An
    uncertain-only study is answered "No Finding" beside an image that shows none.
    """
    return {label: value for label, value in labels.items() if value == LABEL_POSITIVE}


def _write_image(root: Path, config: DemoConfig, study: DemoStudy, index: int) -> None:
    image = study.images[index]
    pixels = render_chest_phantom(
        painted(study.labels), image.view_position, (image.rows, image.cols),
        _image_rng(config, study, index), placements=study.parts.placements,
    )
    extension = "dcm" if config.release == "dicom" else "jpg"
    path = root / mimic_layout.image_relpath(study.subject_id, study.study_id, image.dicom_id, extension)
    path.parent.mkdir(parents=True, exist_ok=True)
    if config.release == "jpg":
        _official_jpg(pixels).save(path, format="JPEG", quality=95)
        return
    write_dx_dicom(
        path,
        pixels,
        subject_id=study.subject_id,
        study_id=study.study_id,
        dicom_id=image.dicom_id,
        view_position=image.view_position,
        portable=study.portable,
        study_date=str(study.study_date),
        study_time=f"{study.study_time:013.6f}".rstrip("0").rstrip("."),
        photometric=image.photometric,
        uid_seed=config.seed,
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    # mtime=0 keeps the gzip bytes (and so the source manifest hash) deterministic for a seed.
    frame.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def _index_tables(patients: Sequence[DemoPatient], release: Release) -> dict[str, pd.DataFrame]:
    extension = "dcm" if release == "dicom" else "jpg"
    records, study_rows, metadata, split_rows, label_rows = [], [], [], [], []
    for patient in patients:
        for study in patient.studies:
            ids = {"subject_id": study.subject_id, "study_id": study.study_id}
            study_rows.append({**ids, "path": mimic_layout.report_relpath(**ids)})
            if study.has_label_row:
                label_rows.append({**ids, **{name: study.labels[name] for name in CHEXPERT_LABELS}})
            for image in study.images:
                view = describe_view(image.view_position, study.portable)
                records.append(
                    {**ids, "dicom_id": image.dicom_id,
                     "path": mimic_layout.image_relpath(**ids, dicom_id=image.dicom_id,
                                                  extension=extension)}
                )
                metadata.append(
                    {
                        "dicom_id": image.dicom_id,
                        **ids,
                        "PerformedProcedureStepDescription": view.procedure_description,
                        "ViewPosition": image.view_position,
                        "Rows": image.rows,
                        "Columns": image.cols,
                        "StudyDate": study.study_date,
                        "StudyTime": study.study_time,
                        "ProcedureCodeSequence_CodeMeaning": view.procedure_description,
                        "ViewCodeSequence_CodeMeaning": view.view.meaning,
                        "PatientOrientationCodeSequence_CodeMeaning": view.patient_orientation.meaning,
                    }
                )
                split_rows.append(
                    {"dicom_id": image.dicom_id, **ids, "split": patient.split}
                )
    labels = _sorted(label_rows, mimic_layout.LABEL_COLUMNS)
    tables = {
        mimic_layout.METADATA: _sorted(metadata, mimic_layout.METADATA_COLUMNS),
        mimic_layout.SPLIT: _sorted(split_rows, mimic_layout.SPLIT_COLUMNS),
        mimic_layout.CHEXPERT: labels,
        mimic_layout.NEGBIO: labels,
    }
    if release == "dicom":
        tables[mimic_layout.RECORD_LIST] = _sorted(records, mimic_layout.RECORD_LIST_COLUMNS)
        tables[mimic_layout.STUDY_LIST] = _sorted(study_rows, mimic_layout.STUDY_LIST_COLUMNS)
    return tables


def _sorted(rows: list[dict[str, object]], columns: Sequence[str]) -> pd.DataFrame:
    """Rows in the real tables' order: by patient, then study."""
    frame = pd.DataFrame(rows, columns=list(columns))
    return frame.sort_values(["subject_id", "study_id"], kind="stable", ignore_index=True)


def _reports_zip(patients: Sequence[DemoPatient]) -> bytes:
    """`mimic-cxr-reports.zip` as PhysioNet ships it: the same relative paths as the .txt files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for patient in patients:
            for study in patient.studies:
                info = zipfile.ZipInfo(mimic_layout.report_relpath(study.subject_id, study.study_id))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, study.report.encode("utf-8"))
    return buffer.getvalue()


@dataclass(frozen=True)
class DemoSummary:
    root: Path
    patients: int
    studies: int
    images: int


def write_demo_tree(out: Path, config: DemoConfig | None = None) -> DemoSummary:
    """Write the demo tree under `out`: images, reports, index tables (see module docstring)."""
    out, config = Path(out), config or DemoConfig()
    patients = plan_demo(config)
    studies = [study for patient in patients for study in patient.studies]
    for study in studies:
        for index in range(len(study.images)):
            _write_image(out, config, study, index)
        if config.release == "dicom":
            report = out / mimic_layout.report_relpath(study.subject_id, study.study_id)
            report.write_text(study.report, encoding="utf-8")
    for name, frame in _index_tables(patients, config.release).items():
        _write_csv(frame, out / f"{name}.gz")
    if config.release == "jpg":
        (out / mimic_layout.REPORTS_ARCHIVES[0]).write_bytes(_reports_zip(patients))
    return DemoSummary(out, len(patients), len(studies), sum(len(s.images) for s in studies))
