"""A demo tree seeded with every kind of bad input: exactly those inputs are rejected, with
their reasons, and nothing good is lost."""


from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate

from cpo_pipeline import mimic_layout
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.ingestion.image_store import DECODE_CACHE_NAME
from cpo_pipeline.ingestion.ingest import IngestOptions, ingest
from cpo_pipeline.ingestion.source import MimicSource

MPEG2_MAIN_PROFILE = "1.2.840.10008.1.2.4.100"  # a real syntax no pixel-data plugin decodes


def _read(root, name):
    return pd.read_csv(root / f"{name}.gz", dtype=str, keep_default_na=False)


def _write(root, name, frame):
    frame.to_csv(root / f"{name}.gz", index=False, compression="gzip")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """The demo tree with one bad input of each kind, each in a different study."""
    root = tmp_path_factory.mktemp("bad")
    write_demo_tree(root, DemoConfig(patients=16, seed=21))
    records = _read(root, mimic_layout.RECORD_LIST)
    one_per_study = records.drop_duplicates("study_id").reset_index(drop=True)
    victims = iter(one_per_study.itertuples())
    expected = {}

    def victim(kind):
        row = next(victims)
        expected[kind] = row
        return row, root / row.path

    _, path = victim("truncated")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _, path = victim("not_dicom")
    path.write_bytes(b"this is not a DICOM file at all")
    _, path = victim("no_pixels")
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    _, path = victim("unsupported_syntax")
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = MPEG2_MAIN_PROFILE
    dataset.PixelData = encapsulate([dataset.PixelData])
    dataset.save_as(path, implicit_vr=False, little_endian=True)
    _, path = victim("image_missing")
    path.unlink()
    row, _ = victim("report_missing")
    (root / mimic_layout.report_relpath(int(row.subject_id), int(row.study_id))).unlink()
    row, _ = victim("report_empty")
    (root / mimic_layout.report_relpath(int(row.subject_id), int(row.study_id))).write_text("  \n")

    row, _ = victim("label_value")
    labels = _read(root, mimic_layout.CHEXPERT)
    labels.loc[labels["study_id"] == row.study_id, "Edema"] = "2"
    _write(root, mimic_layout.CHEXPERT, labels)

    row, _ = victim("ids_disagree")
    metadata = _read(root, mimic_layout.METADATA)
    other_study = next(s for s in metadata["study_id"] if s != row.study_id)
    metadata.loc[metadata["dicom_id"] == row.dicom_id, "study_id"] = other_study
    _write(root, mimic_layout.METADATA, metadata)
    expected["other_study"] = other_study

    records = pd.concat([records, pd.DataFrame([{
        "subject_id": "1x000000", "study_id": "50000000",
        "dicom_id": "00000000-00000000-00000000-00000000-00000000", "path": "files/p1x/bad.dcm",
    }])])
    _write(root, mimic_layout.RECORD_LIST, records)
    return root, expected


@pytest.fixture(scope="module")
def ingested(seeded, tmp_path_factory):
    root, _ = seeded
    store = tmp_path_factory.mktemp("store")
    return ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=2), store)


def _line_of(root, name, dicom_id):
    """The line of table `name` that lists image `dicom_id` (the header is line 1)."""
    table = _read(root, name)
    return int(table.index[table["dicom_id"] == dicom_id][0]) + 2


def _reasons_by_dicom(rejects):
    return dict(zip(rejects["dicom_id"], rejects["reason"]))


def test_each_bad_image_is_rejected_with_its_reason(seeded, ingested):
    _, expected = seeded
    reasons = _reasons_by_dicom(ingested.rejects[ingested.rejects["stage"] == "images"])

    assert reasons[expected["truncated"].dicom_id].startswith("truncated DICOM")
    assert reasons[expected["not_dicom"].dicom_id].startswith("not a DICOM file")
    assert reasons[expected["no_pixels"].dicom_id].startswith("no pixel data")
    assert "unsupported transfer syntax" in reasons[expected["unsupported_syntax"].dicom_id]
    assert "missing" in reasons[expected["image_missing"].dicom_id]
    assert len(reasons) == 5


def test_exactly_the_seeded_inputs_are_rejected(seeded, ingested):
    _, expected = seeded
    rejects = ingested.rejects
    by_stage = rejects.groupby("stage").size().to_dict()

    assert by_stage == {"images": 5, "reports": 2, "labels": 1, "index:metadata": 1,
                        "index:cxr-record-list.csv": 1}
    reports = rejects[rejects["stage"] == "reports"].set_index("study_id")["reason"]
    assert reports[int(expected["report_missing"].study_id)].startswith("report missing")
    assert reports[int(expected["report_empty"].study_id)] == "report is empty"
    label = rejects[rejects["stage"] == "labels"].iloc[0]
    assert label["study_id"] == int(expected["label_value"].study_id)
    assert "Edema '2'" in label["reason"]
    disagree = rejects[rejects["stage"] == "index:metadata"].iloc[0]
    assert disagree["dicom_id"] == expected["ids_disagree"].dicom_id
    victim = expected["ids_disagree"]
    root = seeded[0]
    assert disagree["path"] == (
        f"{root / mimic_layout.METADATA}.gz:{_line_of(root, mimic_layout.METADATA, victim.dicom_id)}")
    assert disagree["reason"] == (
        f"ids disagree between files: {mimic_layout.RECORD_LIST}.gz:"
        f"{_line_of(root, mimic_layout.RECORD_LIST, victim.dicom_id)} says subject {victim.subject_id} "
        f"study {victim.study_id}, {mimic_layout.METADATA}.gz says subject {victim.subject_id} "
        f"study {expected['other_study']}")
    malformed = rejects[rejects["stage"] == "index:cxr-record-list.csv"].iloc[0]
    assert "malformed subject_id '1x000000'" in malformed["reason"]
    assert malformed["path"].endswith(f"{mimic_layout.RECORD_LIST}.gz:{len(_read(seeded[0], mimic_layout.RECORD_LIST)) + 1}")


def test_nothing_good_is_lost_beside_the_bad_inputs(seeded, ingested):
    root, expected = seeded
    listed = _read(root, mimic_layout.RECORD_LIST)
    listed = listed[listed["subject_id"] != "1x000000"]
    bad_images = {expected[k].dicom_id for k in
                  ("truncated", "not_dicom", "no_pixels", "unsupported_syntax", "image_missing",
                   "ids_disagree")}

    assert set(ingested.images["dicom_id"]) == set(listed["dicom_id"]) - bad_images
    lost_studies = {int(expected[k].study_id) for k in ("report_missing", "report_empty")}
    studies_with_images = set(ingested.images["study_id"])
    assert set(ingested.studies["study_id"]) == studies_with_images - lost_studies
    labelled = ingested.studies.set_index("study_id")
    assert pd.isna(labelled.loc[int(expected["label_value"].study_id), "Edema"])


def test_a_rerun_over_unchanged_sources_decodes_nothing(seeded, ingested, tmp_path):
    root, _ = seeded
    store = tmp_path / "store"
    first = ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=1), store)
    again = ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=1), store)

    assert first.decoded_images == len(first.images) > 0
    assert (again.decoded_images, again.reused_images) == (0, len(first.images))
    assert again.images.equals(first.images)


def test_a_changed_source_or_a_lost_decode_record_is_decoded_again(tmp_path):
    root, store = tmp_path / "mimic", tmp_path / "store"
    write_demo_tree(root, DemoConfig(patients=2, seed=3))
    first = ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=1), store)
    changed = Path(first.images["source_path"].iloc[0])
    changed.write_bytes(changed.read_bytes() + b"\0\0")  # one more (padding) byte pair
    after_edit = ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=1), store)
    (store / DECODE_CACHE_NAME).unlink()
    after_loss = ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=1), store)

    assert after_edit.decoded_images == 1
    assert after_loss.decoded_images == len(first.images)
