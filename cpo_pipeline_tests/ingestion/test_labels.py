import gzip
import math
from pathlib import Path

import pandas as pd
import pytest

from cpo_pipeline import schemas
from cpo_pipeline.ingestion.index import IndexTableError, Reject
from cpo_pipeline.ingestion.labels import read_labels, read_test_set_labels
from cpo_pipeline.ingestion.source import MimicSource
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

HEADER = ["subject_id", "study_id", *CHEXPERT_LABELS]
BLANK = [""] * len(CHEXPERT_LABELS)
NAN = math.nan


def labels_row(subject_id: str, study_id: str, **cells: str) -> list[str]:
    """A CSV row with the named label cells filled in (underscores for spaces), the rest blank."""
    values = {name.replace(" ", "_"): "" for name in CHEXPERT_LABELS} | cells
    return [subject_id, study_id, *values.values()]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    text = "".join(",".join(row) + "\n" for row in [header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def expected_labels(subject_id, study_id, source="chexpert", **cells: float) -> dict:
    values = {name: cells.get(name.replace(" ", "_"), NAN) for name in CHEXPERT_LABELS}
    return {"subject_id": subject_id, "study_id": study_id, **values, "label_source": source}


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN made comparable (NaN != NaN)."""
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in frame.to_dict("records")]


def assert_rows(frame: pd.DataFrame, expected: list[dict]) -> None:
    assert records(frame) == records(pd.DataFrame(expected))


@pytest.fixture
def source(tmp_path) -> MimicSource:
    return MimicSource(dicom_root=None, jpg_root=tmp_path, is_demo=False)


def test_gzipped_chexpert_table_is_read_as_float_labels_ignoring_extra_columns(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", [*HEADER, "Comment"], [
        [*labels_row("10000032", "50414267", Edema="1.0", No_Finding=""), "x"],
        [*labels_row("10000764", "57375967", Atelectasis="-1.0", Pneumonia="0.0"), "y"],
    ])

    labels, rejects = read_labels(source)

    assert rejects == []
    assert list(labels.columns) == schemas.CXR_LABELS.names
    assert_rows(labels, [
        expected_labels(10000032, 50414267, Edema=1.0),
        expected_labels(10000764, 57375967, Atelectasis=-1.0, Pneumonia=0.0),
    ])


def test_labels_have_int64_ids_and_float64_values(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER,
              [labels_row("10000032", "50414267", Edema="1.0")])

    labels, _ = read_labels(source)

    assert labels.dtypes.drop("label_source").map(str).unique().tolist() == ["int64", "float64"]


def test_every_written_form_of_a_label_value_is_accepted(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [labels_row(
        "10000032", "50414267", Atelectasis="1", Cardiomegaly=" 1.0 ", Consolidation="0",
        Edema="0.0", Fracture="-1", Lung_Lesion="-1.0", Pneumonia="",
    )])

    labels, rejects = read_labels(source)

    assert rejects == []
    assert_rows(labels, [expected_labels(
        10000032, 50414267, Atelectasis=1.0, Cardiomegaly=1.0, Consolidation=0.0, Edema=0.0,
        Fracture=-1.0, Lung_Lesion=-1.0,
    )])


def test_all_blank_row_is_kept_with_every_label_missing(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [["10000032", "50414267", *BLANK]])

    labels, _ = read_labels(source)

    assert_rows(labels, [expected_labels(10000032, 50414267)])


def test_a_malformed_cell_is_left_blank_and_the_rows_other_labels_are_kept(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [
        labels_row("10000032", "50414267", Cardiomegaly="1.0", Edema="2"),
    ])

    labels, rejects = read_labels(source)

    assert labels.loc[0, "Cardiomegaly"] == 1.0
    assert math.isnan(labels.loc[0, "Edema"])
    assert_rows(labels, [expected_labels(10000032, 50414267, Cardiomegaly=1.0)])
    assert rejects == [Reject(
        "labels", f"{path}:2",
        "malformed label value (Edema '2'; expected 1.0, 0.0, -1.0 or blank): left blank",
        10000032, 50414267,
    )]


def test_each_malformed_cell_is_rejected_naming_line_label_and_value(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [
        labels_row("10000032", "50414267", Edema="1.0"),
        labels_row("10000764", "57375967", Edema="2", Pneumonia="yes"),
        labels_row("10000898", "50771383", Fracture="nan?"),
    ])

    labels, rejects = read_labels(source)

    assert labels["study_id"].tolist() == [50414267, 57375967, 50771383]
    assert rejects == [
        Reject("labels", f"{path}:3", "malformed label value (Edema '2'; expected 1.0, 0.0, "
               "-1.0 or blank): left blank", 10000764, 57375967),
        Reject("labels", f"{path}:3", "malformed label value (Pneumonia 'yes'; expected 1.0, "
               "0.0, -1.0 or blank): left blank", 10000764, 57375967),
        Reject("labels", f"{path}:4", "malformed label value (Fracture 'nan?'; expected 1.0, "
               "0.0, -1.0 or blank): left blank", 10000898, 50771383),
    ]


def test_row_with_a_malformed_id_is_rejected_by_id_validation(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [
        labels_row("1000003", "50414267", Edema="1.0"),
        labels_row("10000764", "57375967", Edema="1.0"),
    ])

    labels, rejects = read_labels(source)

    assert labels["study_id"].tolist() == [57375967]
    assert rejects == [Reject(
        "labels", f"{path}:2",
        "malformed subject_id '1000003' (expected 8 digits starting with 1)",
        None, 50414267,
    )]


def test_repeated_study_rows_keep_the_first_and_reject_the_others(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [
        labels_row("10000032", "50414267", Edema="1.0"),
        labels_row("10000764", "57375967"),
        labels_row("10000032", "50414267", Edema="0.0"),
    ])

    labels, rejects = read_labels(source)

    assert_rows(labels, [
        expected_labels(10000032, 50414267, Edema=1.0),
        expected_labels(10000764, 57375967),
    ])
    assert rejects == [Reject(
        "labels", f"{path}:4", "repeated row for study 50414267 (first at line 2; kept that one)",
        10000032, 50414267,
    )]


def test_no_finding_zero_or_uncertain_is_kept_as_read(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER, [
        labels_row("10000032", "50414267", No_Finding="0.0"),
        labels_row("10000764", "57375967", No_Finding="-1.0"),
    ])

    labels, rejects = read_labels(source)

    assert rejects == []
    assert labels["No Finding"].tolist() == [0.0, -1.0]


def test_negbio_source_reads_the_negbio_table(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", HEADER,
              [labels_row("10000032", "50414267", Edema="1.0")])
    write_csv(tmp_path / "mimic-cxr-2.0.0-negbio.csv.gz", HEADER,
              [labels_row("10000032", "50414267", Edema="-1.0")])

    labels, _ = read_labels(source, "negbio")

    assert_rows(labels, [expected_labels(10000032, 50414267, "negbio", Edema=-1.0)])


def test_table_is_found_in_the_dicom_root_too(tmp_path):
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", HEADER,
              [labels_row("10000032", "50414267", Edema="1.0")])
    source = MimicSource(dicom_root=tmp_path, jpg_root=tmp_path / "absent", is_demo=False)

    labels, _ = read_labels(source)

    assert labels["Edema"].tolist() == [1.0]


def test_unknown_label_source_is_an_error_listing_the_known_ones(source):
    with pytest.raises(ValueError, match=r"unknown label source 'chexbert'; expected one of "
                                         r"\['chexpert', 'negbio'\]"):
        read_labels(source, "chexbert")


def test_missing_label_table_is_an_error_naming_the_roots_searched(tmp_path, source):
    with pytest.raises(IndexTableError) as error:
        read_labels(source)

    assert str(error.value).startswith(
        f"mimic-cxr-2.0.0-chexpert.csv(.gz) not found in {[str(tmp_path)]}"
    )


def test_label_table_lacking_a_label_column_is_an_error_naming_it(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv",
                     [column for column in HEADER if column != "Fracture"],
                     [["10000032", "50414267", *BLANK[1:]]])

    expected = rf"{path}: missing required column\(s\) \['Fracture'\]"
    with pytest.raises(IndexTableError, match=expected):
        read_labels(source)


TEST_SET_HEADER = ["study_id", *["Airspace Opacity" if name == "Lung Opacity" else name
                                 for name in CHEXPERT_LABELS]]


def test_set_labels_read_airspace_opacity_as_lung_opacity_with_null_subject(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.1.0-test-set-labeled.csv", TEST_SET_HEADER, [
        labels_row("", "50414267", Lung_Opacity="1.0", Edema="0.0")[1:],
    ])

    labels, rejects = read_test_set_labels(source)

    assert rejects == []
    assert list(labels.columns) == schemas.CXR_LABELS.names
    assert labels["subject_id"].dtype == "Int64"
    assert labels["subject_id"].isna().tolist() == [True]
    assert_rows(labels.drop(columns="subject_id"), [
        {k: v for k, v in expected_labels(None, 50414267, "radiologist-test-set",
                                          Lung_Opacity=1.0, Edema=0.0).items()
         if k != "subject_id"},
    ])


def test_set_rows_with_malformed_study_ids_are_rejected_and_bad_cells_left_blank(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.1.0-test-set-labeled.csv", TEST_SET_HEADER, [
        labels_row("", "5041426x")[1:],
        labels_row("", "57375967", Edema="yes")[1:],
    ])

    labels, rejects = read_test_set_labels(source)

    assert labels["study_id"].tolist() == [57375967]
    assert math.isnan(labels.loc[0, "Edema"])
    assert rejects == [
        Reject("labels", f"{path}:2",
               "malformed study_id '5041426x' (expected 8 digits starting with 5)"),
        Reject("labels", f"{path}:3",
               "malformed label value (Edema 'yes'; expected 1.0, 0.0, -1.0 or blank): left "
               "blank", None, 57375967),
    ]


def test_set_file_carrying_subject_ids_keeps_them(tmp_path, source):
    write_csv(tmp_path / "mimic-cxr-2.1.0-test-set-labeled.csv", ["subject_id", *TEST_SET_HEADER],
              [labels_row("10000032", "50414267", Edema="1.0")])

    labels, _ = read_test_set_labels(source)

    assert labels[["subject_id", "study_id", "Edema"]].to_dict("records") == [
        {"subject_id": 10000032, "study_id": 50414267, "Edema": 1.0}
    ]


def test_set_file_lacking_a_label_column_is_an_error_naming_it(tmp_path, source):
    path = write_csv(tmp_path / "mimic-cxr-2.1.0-test-set-labeled.csv",
                     [column for column in TEST_SET_HEADER if column != "Airspace Opacity"],
                     [["50414267", *BLANK[1:]]])

    expected = rf"{path}: missing label column\(s\) \['Lung Opacity'\]"
    with pytest.raises(IndexTableError, match=expected):
        read_test_set_labels(source)


def test_missing_test_set_file_is_an_error(source):
    expected = r"mimic-cxr-2.1.0-test-set-labeled.csv\(.gz\) not found"
    with pytest.raises(IndexTableError, match=expected):
        read_test_set_labels(source)
