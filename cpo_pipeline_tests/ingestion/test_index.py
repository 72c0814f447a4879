"""The image index: rows of the record list, metadata and split tables that cannot be used are
rejected at the `file:line` of the row that says so."""

import pandas as pd
import pytest

from cpo_pipeline import mimic_layout
from cpo_pipeline.ingestion.index import Reject, image_relpaths, read_image_index
from cpo_pipeline.ingestion.source import MimicSource

IMAGES = [  # subject, study, dicom
    (10000032, 50414267, "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"),
    (10000032, 53189527, "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"),
    (10000764, 57375967, "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4"),
]


def write_tree(root, records=IMAGES, metadata=IMAGES, split=IMAGES, splits=None):
    """A DICOM root with the three index tables listing the given (subject, study, dicom)."""
    pd.DataFrame([{"subject_id": s, "study_id": t, "dicom_id": d,
                   "path": mimic_layout.image_relpath(s, t, d)} for s, t, d in records]).to_csv(
        root / mimic_layout.RECORD_LIST, index=False)
    pd.DataFrame([{"dicom_id": d, "subject_id": s, "study_id": t, **dict.fromkeys(
        mimic_layout.METADATA_COLUMNS[3:], ""), "ViewPosition": "PA", "StudyDate": "21800506",
                   "StudyTime": "213014.531"} for s, t, d in metadata]).to_csv(
        root / mimic_layout.METADATA, index=False)
    splits = splits or ["train"] * len(split)
    pd.DataFrame([{"dicom_id": d, "study_id": t, "subject_id": s, "split": name}
                  for (s, t, d), name in zip(split, splits, strict=True)]).to_csv(
        root / mimic_layout.SPLIT, index=False)
    return MimicSource(dicom_root=root, jpg_root=None, is_demo=False)


def test_ids_disagreeing_are_rejected_at_the_conflicting_row_saying_which_file_says_what(
    tmp_path
):
    other_study = [IMAGES[0], (10000032, 56699142, IMAGES[1][2]), IMAGES[2]]
    source = write_tree(tmp_path, metadata=other_study)

    images, _, rejects = read_image_index(source)

    assert rejects == [Reject(
        "index:metadata", f"{tmp_path / mimic_layout.METADATA}:3",
        f"ids disagree between files: {mimic_layout.RECORD_LIST}:3 says subject 10000032 study "
        f"53189527, {mimic_layout.METADATA} says subject 10000032 study 56699142",
        10000032, 53189527, IMAGES[1][2])]
    assert images["dicom_id"].tolist() == [IMAGES[0][2], IMAGES[2][2]]


def test_an_image_missing_from_the_metadata_is_rejected_at_its_record_list_line(tmp_path):
    source = write_tree(tmp_path, metadata=[IMAGES[0], IMAGES[2]])

    _, _, rejects = read_image_index(source)

    assert rejects == [Reject(
        "index:metadata", f"{tmp_path / mimic_layout.RECORD_LIST}:3",
        f"image has no row in the metadata table ({tmp_path / mimic_layout.METADATA})",
        *IMAGES[1])]


def test_a_split_row_with_an_unknown_split_is_rejected_at_its_line(tmp_path):
    source = write_tree(tmp_path, split=IMAGES[::-1], splits=["train", "val", "test"])

    images, _, rejects = read_image_index(source)

    assert rejects == [Reject(
        "index:split", f"{tmp_path / mimic_layout.SPLIT}:3",
        "image has no valid split row: split 'val' (expected train, validate or test)",
        *IMAGES[1])]
    assert dict(zip(images["dicom_id"], images["split"])) == {
        IMAGES[0][2]: "test", IMAGES[2][2]: "train"}


def test_an_image_missing_from_the_split_is_rejected_at_its_record_list_line(tmp_path):
    source = write_tree(tmp_path, split=IMAGES[1:])

    _, _, rejects = read_image_index(source)

    assert rejects == [Reject(
        "index:split", f"{tmp_path / mimic_layout.RECORD_LIST}:2",
        f"image has no valid split row: no row in {tmp_path / mimic_layout.SPLIT}", *IMAGES[0])]


def test_a_record_path_disagreeing_with_its_ids_is_rejected_at_its_line(tmp_path):
    source = write_tree(tmp_path)
    records = pd.read_csv(tmp_path / mimic_layout.RECORD_LIST, dtype=str)
    records.loc[2, "path"] = "files/p10/p10000764/s50000000/x.dcm"
    records.to_csv(tmp_path / mimic_layout.RECORD_LIST, index=False)

    _, _, rejects = read_image_index(source)

    assert rejects == [Reject(
        "index:record-list", f"{tmp_path / mimic_layout.RECORD_LIST}:4",
        "path 'files/p10/p10000764/s50000000/x.dcm' disagrees with its ids", *IMAGES[2])]


@pytest.mark.parametrize("extension", ["dcm", "jpg"])
def test_column_wise_image_paths_are_the_layouts(extension):
    images = pd.DataFrame(IMAGES, columns=["subject_id", "study_id", "dicom_id"])

    assert image_relpaths(images, extension).tolist() == [
        mimic_layout.image_relpath(s, t, d, extension) for s, t, d in IMAGES]
