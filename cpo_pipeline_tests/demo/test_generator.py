import gzip
import zipfile

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from cpo_pipeline import mimic_layout
from cpo_pipeline.demo.generator import DemoConfig, painted, plan_demo, write_demo_tree
from cpo_pipeline.demo.phantom import render_chest_phantom
from cpo_pipeline.ingestion.sections import extract_sections
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.radiology.labeller import label_report

DIGITAL_XRAY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    write_demo_tree(root, DemoConfig(patients=30, seed=11))
    return root


def _table(root, name):
    return pd.read_csv(root / f"{name}.gz", dtype=str, keep_default_na=False)


def test_writes_exactly_the_documented_tables_and_columns(tree):
    expected = {
        mimic_layout.RECORD_LIST: mimic_layout.RECORD_LIST_COLUMNS,
        mimic_layout.STUDY_LIST: mimic_layout.STUDY_LIST_COLUMNS,
        mimic_layout.METADATA: mimic_layout.METADATA_COLUMNS,
        mimic_layout.SPLIT: mimic_layout.SPLIT_COLUMNS,
        mimic_layout.CHEXPERT: mimic_layout.LABEL_COLUMNS,
        mimic_layout.NEGBIO: mimic_layout.LABEL_COLUMNS,
    }
    assert sorted(p.name for p in tree.iterdir() if p.is_file() and not p.name.startswith(".")) == sorted(
        f"{name}.gz" for name in expected
    )
    for name, columns in expected.items():
        with gzip.open(tree / f"{name}.gz", "rt") as handle:
            assert handle.readline().strip().split(",") == list(columns), name


def test_every_listed_path_exists_in_the_mimic_layout(tree):
    records = _table(tree, mimic_layout.RECORD_LIST)
    for row in records.itertuples():
        assert row.path == f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}/{row.dicom_id}.dcm"
        assert (tree / row.path).is_file()
        assert mimic_layout.DICOM_ID_PATTERN.fullmatch(row.dicom_id)
    studies = _table(tree, mimic_layout.STUDY_LIST)
    for row in studies.itertuples():
        assert row.path == f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}.txt"
        assert (tree / row.path).is_file()
    assert all(mimic_layout.SUBJECT_ID_PATTERN.fullmatch(s) for s in studies["subject_id"])
    assert all(mimic_layout.STUDY_ID_PATTERN.fullmatch(s) for s in studies["study_id"])
    assert set(records["study_id"]) == set(studies["study_id"])


def test_dicoms_read_back_and_agree_with_the_metadata_table(tree):
    metadata = _table(tree, mimic_layout.METADATA).set_index("dicom_id")
    records = _table(tree, mimic_layout.RECORD_LIST)
    photometrics = set()
    for row in records.itertuples():
        dataset = pydicom.dcmread(tree / row.path)
        meta = metadata.loc[row.dicom_id]
        assert dataset.SOPClassUID == DIGITAL_XRAY_FOR_PRESENTATION
        assert dataset.Modality == "DX"
        assert dataset.SOPInstanceUID.startswith("2.25.")
        assert dataset.PatientID == row.subject_id
        assert dataset.ViewPosition == meta["ViewPosition"]
        assert (str(dataset.Rows), str(dataset.Columns)) == (meta["Rows"], meta["Columns"])
        assert dataset.StudyDate == meta["StudyDate"]
        assert dataset.BitsAllocated == 16
        assert dataset.pixel_array.shape == (dataset.Rows, dataset.Columns)
        photometrics.add(dataset.PhotometricInterpretation)
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_label_tables_agree_with_the_report_text_under_the_chexpert_rules(tree):
    labels = _table(tree, mimic_layout.CHEXPERT)
    reports = _table(tree, mimic_layout.STUDY_LIST).set_index("study_id")
    assert len(labels) > 0
    for row in labels.to_dict("records"):
        text = (tree / reports.loc[row["study_id"], "path"]).read_text(encoding="utf-8")
        labelled = extract_sections(text).labelled_text
        expected = {name: float(row[name]) if row[name] else None for name in CHEXPERT_LABELS}
        assert label_report(labelled) == expected, row["study_id"]


def test_splits_are_patient_disjoint_and_cover_all_three(tree):
    split = _table(tree, mimic_layout.SPLIT)
    per_patient = split.groupby("subject_id")["split"].nunique()
    assert per_patient.max() == 1
    assert set(split["split"]) == set(mimic_layout.SPLITS)


def test_studies_follow_the_real_view_mix_and_timeline(tree):
    metadata = _table(tree, mimic_layout.METADATA)
    views = metadata.groupby("study_id")["ViewPosition"].apply(lambda v: tuple(sorted(v)))
    assert set(views) <= {("LATERAL", "PA"), ("LL", "PA"), ("AP",), ("LATERAL",)}
    assert {("LATERAL", "PA"), ("AP",)} <= set(views)
    dates = metadata.drop_duplicates("study_id").astype({"StudyDate": int})
    assert dates["StudyDate"].between(21000101, 22001231).all()
    assert metadata.groupby("subject_id")["study_id"].nunique().max() > 1


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_demo_tree(first, DemoConfig(patients=4, seed=5))
    write_demo_tree(second, DemoConfig(patients=4, seed=5))
    write_demo_tree(other, DemoConfig(patients=4, seed=6))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    assert (first / f"{mimic_layout.METADATA}.gz").read_bytes() != (other / f"{mimic_layout.METADATA}.gz").read_bytes()


def test_plan_is_deterministic_and_pixel_free():
    assert plan_demo(DemoConfig(patients=6, seed=2)) == plan_demo(DemoConfig(patients=6, seed=2))


def test_jpg_release_has_jpgs_tables_and_a_reports_archive_but_no_dicom_lists(tmp_path):
    summary = write_demo_tree(tmp_path, DemoConfig(patients=5, seed=3, release="jpg"))
    jpgs = sorted(tmp_path.rglob("*.jpg"))
    assert len(jpgs) == summary.images
    assert not list(tmp_path.rglob("*.dcm")) and not list(tmp_path.rglob("*.txt"))
    assert not (tmp_path / f"{mimic_layout.RECORD_LIST}.gz").exists()
    with Image.open(jpgs[0]) as image:
        assert image.mode == "L" and image.format == "JPEG"
    with zipfile.ZipFile(tmp_path / "mimic-cxr-reports.zip") as archive:
        names = archive.namelist()
    studies = _table(tmp_path, mimic_layout.METADATA)["study_id"].unique()
    assert len(names) == len(studies) == summary.studies


def test_realistic_size_images_are_2500_to_3100_pixels():
    patients = plan_demo(DemoConfig(patients=3, seed=1, realistic_size=True))
    sides = np.array([(i.rows, i.cols) for p in patients for s in p.studies for i in s.images])
    assert sides[:, 0].min() >= 2500 and sides[:, 0].max() < 3100
    assert (sides[:, 1] < sides[:, 0]).all()


# Findings a side can be painted for (edema is bilateral by nature; the heart has no side).
SIDED = ("Atelectasis", "Consolidation", "Pneumonia", "Lung Opacity", "Lung Lesion",
         "Pleural Effusion", "Pleural Other", "Pneumothorax", "Fracture")


def test_every_painted_finding_with_a_side_in_its_report_is_painted_on_that_side():
    checked = 0
    for patient in plan_demo(DemoConfig(patients=40, seed=5)):
        for study in patient.studies:
            shown = painted(study.labels)
            for label in SIDED:
                placement = study.parts.placements.get(label)
                if label not in shown or placement is None or placement.side not in (
                        "right", "left"):
                    continue
                # The side is the report's own word for this finding ...
                assert placement.side in study.parts.findings.lower()
                # ... and the finding's pixels lie on that side (patient's right = image left).
                with_it, without = (render_chest_phantom(
                    findings, "PA", (128, 112), np.random.default_rng(study.study_id),
                    placements=study.parts.placements).astype(float)
                    for findings in (shown, {k: v for k, v in shown.items() if k != label}))
                change = np.abs(with_it - without)
                half = change.shape[1] // 2
                on_side = change[:, :half] if placement.side == "right" else change[:, half:]
                assert on_side.sum() > 0.8 * change.sum(), (study.study_id, label, placement)
                checked += 1
    assert checked >= 25


def test_uncertain_findings_are_not_painted_and_not_answered():
    labels = {"Pneumonia": -1.0, "Pleural Effusion": 1.0, "Pneumothorax": 0.0, "Edema": None}

    assert painted(labels) == {"Pleural Effusion": 1.0}


def test_drift_makes_later_visits_sicker_and_keeps_the_patients_and_their_visits():
    still = plan_demo(DemoConfig(patients=1500, seed=3))
    drifting = plan_demo(DemoConfig(patients=1500, seed=3, drift=0.8))

    def edema_share(patients, visits):
        chosen = [study.labels["Edema"] == 1.0 for patient in patients
                  for visit, study in enumerate(patient.studies)
                  if len(patient.studies) >= 3 and visits(visit, len(patient.studies))]
        return np.mean(chosen)

    first, last = (lambda v, n: v == 0), (lambda v, n: v == n - 1)
    assert edema_share(drifting, last) > 2 * edema_share(drifting, first)
    assert abs(edema_share(still, last) - edema_share(still, first)) < 0.05
    assert [[s.study_id for s in p.studies] for p in still] == [
        [s.study_id for s in p.studies] for p in drifting]


def test_study_times_never_round_up_to_a_sixtieth_second():
    from cpo_pipeline.demo.generator import _study_time

    rng = np.random.default_rng(0)
    times = [_study_time(rng) for _ in range(200_000)]
    seconds = [round(t % 100, 3) for t in times]
    minutes = [int(t // 100) % 100 for t in times]

    assert max(seconds) < 60 and max(minutes) < 60 and max(times) < 240_000
    assert any(s >= 59.99 for s in seconds)  # the edge the old rounding crossed is reached
