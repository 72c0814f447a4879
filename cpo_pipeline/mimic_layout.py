"""The MIMIC-CXR 2.x file layout: identifier formats, relative paths, index table names and columns.

One module, used both by the demo generator (which writes this layout) and by ingestion (which
reads it), so the two cannot drift apart.
"""

from __future__ import annotations

import re

from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

SUBJECT_ID_PATTERN = re.compile(r"1\d{7}")
STUDY_ID_PATTERN = re.compile(r"5\d{7}")
DICOM_ID_PATTERN = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")
SHARDS = tuple(f"p{n}" for n in range(10, 20))

# Index tables. The DICOM release carries the record and study lists; the JPG release the rest
# (its tables keep the 2.0.0 prefix even in 2.1.0). Each may be gzipped or not.
RECORD_LIST = "cxr-record-list.csv"
STUDY_LIST = "cxr-study-list.csv"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
NEGBIO = "mimic-cxr-2.0.0-negbio.csv"
TEST_SET_LABELED = "mimic-cxr-2.1.0-test-set-labeled.csv"
REPORTS_ARCHIVES = ("mimic-cxr-reports.zip", "mimic-cxr-reports.tar.gz")

RECORD_LIST_COLUMNS = ("subject_id", "study_id", "dicom_id", "path")
STUDY_LIST_COLUMNS = ("subject_id", "study_id", "path")
METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
SPLITS = ("train", "validate", "test")
LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)

FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")


def shard_of(subject_id: int) -> str:
    """`p10` … `p19`: "p" plus the first two digits of the subject id."""
    return f"p{str(subject_id)[:2]}"


def study_dir(subject_id: int, study_id: int) -> str:
    return f"files/{shard_of(subject_id)}/p{subject_id}/s{study_id}"


def image_relpath(subject_id: int, study_id: int, dicom_id: str, extension: str = "dcm") -> str:
    return f"{study_dir(subject_id, study_id)}/{dicom_id}.{extension}"


def report_relpath(subject_id: int, study_id: int) -> str:
    """The report is a sibling of the study folder: `files/pXX/pSUBJECT/sSTUDY.txt`."""
    return f"{study_dir(subject_id, study_id)}.txt"
