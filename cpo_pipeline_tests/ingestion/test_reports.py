import io
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from cpo_pipeline import schemas
from cpo_pipeline.ingestion.index import Reject
from cpo_pipeline.ingestion.reports import read_archive_reports, read_reports
from cpo_pipeline.ingestion.source import MimicSource
from cpo_pipeline_tests.ingestion.report_text import TITLE, mimic_report

SUBJECT, STUDY = 10000032, 50414267
OTHER_SUBJECT, OTHER_STUDY = 12345678, 59876543
RELPATH = "files/p10/p10000032/s50414267.txt"
OTHER_RELPATH = "files/p12/p12345678/s59876543.txt"


REPORT = mimic_report(
    TITLE,
    "INDICATION:  Cough.",
    "",
    "COMPARISON:  None.",
    "",
    "FINDINGS: ",
    "",
    "Lungs are clear.  No effusion.",
    "",
    "IMPRESSION: ",
    "",
    "No acute process.",
)
OTHER_REPORT = mimic_report(TITLE, "IMPRESSION: ", "", "Small right effusion.")


def studies_frame(
    *ids: tuple[int, int], report_paths: list[str | None] | None = None
) -> pd.DataFrame:
    frame = pd.DataFrame(ids, columns=["subject_id", "study_id"])
    if report_paths is not None:
        frame["report_path"] = report_paths
    return frame


def write_report(root: Path, relpath: str, content: str | bytes) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def write_zip(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text.encode("utf-8"))
    return path


def write_tar_gz(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_report_is_read_from_its_txt_file_into_sections(tmp_path):
    path = write_report(tmp_path, RELPATH, REPORT)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert rejects == []
    assert reports.to_dict("records") == [{
        "subject_id": SUBJECT,
        "study_id": STUDY,
        "report_path": str(path),
        "raw_text": REPORT,
        "findings": "Lungs are clear. No effusion.",
        "impression": "No acute process.",
        "indication": "Cough.",
        "comparison": "None.",
        "last_paragraph": None,
        "labelled_section": "impression",
        "findings_text": "Lungs are clear. No effusion.",
    }]


def test_output_has_the_declared_columns_and_int64_ids(tmp_path):
    write_report(tmp_path, RELPATH, REPORT)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, _ = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert list(reports.columns) == schemas.CXR_REPORTS.names
    assert (reports["subject_id"].dtype, reports["study_id"].dtype) == ("int64", "int64")


def test_report_path_from_the_study_list_overrides_the_layout_path(tmp_path):
    path = write_report(tmp_path, "elsewhere/s50414267.txt", REPORT)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)
    studies = studies_frame((SUBJECT, STUDY), (OTHER_SUBJECT, OTHER_STUDY),
                            report_paths=["elsewhere/s50414267.txt", ""])
    write_report(tmp_path, OTHER_RELPATH, OTHER_REPORT)

    reports, rejects = read_reports(source, studies)

    assert rejects == []
    assert reports["report_path"].tolist() == [str(path), str(tmp_path / OTHER_RELPATH)]


def test_jpg_only_users_get_reports_from_the_zip_archive(tmp_path):
    archive = write_zip(tmp_path / "mimic-cxr-reports.zip",
                        {RELPATH: REPORT, OTHER_RELPATH: OTHER_REPORT})
    source = MimicSource(dicom_root=None, jpg_root=tmp_path, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert rejects == []
    assert reports[["study_id", "report_path", "raw_text"]].to_dict("records") == [
        {"study_id": STUDY, "report_path": f"{archive}!{RELPATH}", "raw_text": REPORT}
    ]


def test_zip_members_under_a_leading_folder_are_matched_by_their_files_suffix(tmp_path):
    member = f"mimic-cxr-reports/{RELPATH}"
    archive = write_zip(tmp_path / "mimic-cxr-reports.zip", {member: REPORT})
    source = MimicSource(dicom_root=None, jpg_root=tmp_path, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert rejects == []
    assert reports["report_path"].tolist() == [f"{archive}!{member}"]
    assert reports["impression"].tolist() == ["No acute process."]


def test_reports_are_read_from_a_tar_gz_archive(tmp_path):
    archive = write_tar_gz(tmp_path / "mimic-cxr-reports.tar.gz",
                           {f"files/{RELPATH}": REPORT, f"files/{OTHER_RELPATH}": OTHER_REPORT})
    source = MimicSource(dicom_root=None, jpg_root=tmp_path, is_demo=False)

    reports, rejects = read_reports(
        source, studies_frame((OTHER_SUBJECT, OTHER_STUDY), (SUBJECT, STUDY))
    )

    assert rejects == []
    assert reports[["study_id", "report_path", "impression"]].to_dict("records") == [
        {"study_id": OTHER_STUDY, "report_path": f"{archive}!files/{OTHER_RELPATH}",
         "impression": "Small right effusion."},
        {"study_id": STUDY, "report_path": f"{archive}!files/{RELPATH}",
         "impression": "No acute process."},
    ]


def test_archive_fills_in_only_the_reports_missing_as_files(tmp_path):
    dicom_root, jpg_root = tmp_path / "dicom", tmp_path / "jpg"
    path = write_report(dicom_root, RELPATH, REPORT)
    archive = write_zip(jpg_root / "mimic-cxr-reports.zip",
                        {RELPATH: "archive copy, not read", OTHER_RELPATH: OTHER_REPORT})
    source = MimicSource(dicom_root=dicom_root, jpg_root=jpg_root, is_demo=False)

    reports, rejects = read_reports(
        source, studies_frame((SUBJECT, STUDY), (OTHER_SUBJECT, OTHER_STUDY))
    )

    assert rejects == []
    assert reports["report_path"].tolist() == [str(path), f"{archive}!{OTHER_RELPATH}"]


def test_zip_is_preferred_over_tar_gz_when_both_are_present(tmp_path):
    archive = write_zip(tmp_path / "mimic-cxr-reports.zip", {RELPATH: REPORT})
    write_tar_gz(tmp_path / "mimic-cxr-reports.tar.gz", {RELPATH: OTHER_REPORT})
    source = MimicSource(dicom_root=None, jpg_root=tmp_path, is_demo=False)

    reports, _ = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert reports["report_path"].tolist() == [f"{archive}!{RELPATH}"]


def test_reading_an_archive_writes_nothing_to_disk(tmp_path):
    write_tar_gz(tmp_path / "mimic-cxr-reports.tar.gz", {RELPATH: REPORT})
    write_zip(tmp_path / "other" / "mimic-cxr-reports.zip", {RELPATH: REPORT})
    before = sorted(tmp_path.rglob("*"))

    read_archive_reports(tmp_path / "mimic-cxr-reports.tar.gz", {RELPATH})
    read_archive_reports(tmp_path / "other" / "mimic-cxr-reports.zip", {RELPATH})

    assert sorted(tmp_path.rglob("*")) == before


def test_archive_reader_returns_only_the_wanted_reports(tmp_path):
    archive = write_tar_gz(tmp_path / "mimic-cxr-reports.tar.gz",
                           {RELPATH: REPORT, OTHER_RELPATH: OTHER_REPORT, "README.txt": "x"})

    found = read_archive_reports(archive, {OTHER_RELPATH})

    assert found == {OTHER_RELPATH: (OTHER_RELPATH, OTHER_REPORT.encode("utf-8"))}


def test_missing_report_is_rejected_naming_the_file_and_archive_looked_for(tmp_path):
    dicom_root, jpg_root = tmp_path / "dicom", tmp_path / "jpg"
    archive = write_zip(jpg_root / "mimic-cxr-reports.zip", {OTHER_RELPATH: OTHER_REPORT})
    source = MimicSource(dicom_root=dicom_root, jpg_root=jpg_root, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert reports.empty
    assert rejects == [Reject(
        stage="reports",
        path=str(dicom_root / RELPATH),
        reason=f"report missing: no file {dicom_root / RELPATH} and no member ending in "
               f"{RELPATH} in {archive}",
        subject_id=SUBJECT,
        study_id=STUDY,
    )]


def test_missing_report_without_any_archive_names_the_roots_searched(tmp_path):
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    _, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert [(r.path, r.reason) for r in rejects] == [(
        str(tmp_path / RELPATH),
        (f"report missing: no file {tmp_path / RELPATH} and no mimic-cxr-reports.zip or "
         f"mimic-cxr-reports.tar.gz in {[str(tmp_path)]}"),
    )]


@pytest.mark.parametrize("content", ["", " \n \n   \n"])
def test_empty_or_whitespace_only_report_is_rejected(tmp_path, content):
    path = write_report(tmp_path, RELPATH, content)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert reports.empty
    assert rejects == [Reject("reports", str(path), "report is empty", SUBJECT, STUDY)]


def test_report_of_only_a_title_is_rejected_for_having_no_usable_section(tmp_path):
    path = write_report(tmp_path, RELPATH, mimic_report(TITLE))
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert reports.empty
    assert rejects == [Reject("reports", str(path), "no findings, impression or last paragraph",
                              SUBJECT, STUDY)]


def test_report_without_findings_or_impression_keeps_its_last_paragraph(tmp_path):
    report = mimic_report(TITLE, "INDICATION:  Fever.", "", "COMPARISON:  None.", "",
                          "Heart size is normal.")
    write_report(tmp_path, RELPATH, report)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, _ = read_reports(source, studies_frame((SUBJECT, STUDY)))

    row = reports.iloc[0]
    assert (row["comparison"], row["last_paragraph"], row["labelled_section"],
            row["findings_text"]) == ("None.", "Heart size is normal.", "last_paragraph",
                                      "Heart size is normal.")


def test_non_ascii_report_text_is_decoded_as_utf8(tmp_path):
    report = mimic_report(TITLE, "IMPRESSION: ", "", "Opacity 2 cm × 3 cm, unchanged.")
    write_report(tmp_path, RELPATH, report)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, _ = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert reports["impression"].tolist() == ["Opacity 2 cm × 3 cm, unchanged."]


def test_undecodable_bytes_are_replaced_and_the_report_kept(tmp_path):
    report = mimic_report(TITLE, "IMPRESSION: ", "", "Clear lungs.").encode() + b" \xff\xfe\n"
    write_report(tmp_path, RELPATH, report)
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, rejects = read_reports(source, studies_frame((SUBJECT, STUDY)))

    assert rejects == []
    assert reports["impression"].tolist() == ["Clear lungs. \ufffd\ufffd"]


def test_no_studies_give_an_empty_frame_with_the_declared_columns(tmp_path):
    source = MimicSource(dicom_root=tmp_path, jpg_root=None, is_demo=False)

    reports, rejects = read_reports(source, studies_frame())

    assert (list(reports.columns), len(reports), rejects) == (schemas.CXR_REPORTS.names, 0, [])
