"""The free-text report of each study, from its `.txt` file or from the reports archive."""

from __future__ import annotations

import re
import tarfile
import zipfile
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from cpo_pipeline import mimic_layout, schemas
from cpo_pipeline.ingestion.index import Reject
from cpo_pipeline.ingestion.sections import extract_sections
from cpo_pipeline.ingestion.source import MimicSource

STAGE = "reports"

# Archive members carry the tree's relative paths, sometimes under a leading folder
# (`mimic-cxr-reports/files/...`): the `files/...` suffix is what names the study.
_REPORT_MEMBER = re.compile(r"(?:^|/)(files/p\d+/p\d+/s\d+\.txt)$")


def read_reports(
    source: MimicSource, studies: pd.DataFrame
) -> tuple[pd.DataFrame, list[Reject]]:
    """One row per study with a usable report (`schemas.CXR_REPORTS`), a reject for each other.

    `studies` needs subject_id and study_id; a non-blank `report_path` (relative, as in
    cxr-study-list) overrides the layout's path. A report is read from its `.txt` file under the
    DICOM root, else from the first reports archive (.zip, then .tar.gz) in either root, which is
    where JPG-only users have them. Bytes that are not UTF-8 are replaced (U+FFFD) rather than
    costing the report: the sections around them are still usable.
    """
    subject_ids = studies["subject_id"].astype("int64").tolist()
    study_ids = studies["study_id"].astype("int64").tolist()
    relpaths = _relative_report_paths(studies)
    found = [_read_report_file(source.dicom_root, relpath) for relpath in relpaths]
    missing = {relpath for relpath, hit in zip(relpaths, found) if hit is None}
    archive = find_reports_archive(source) if missing else None
    if archive is not None:
        members = read_archive_reports(archive, missing)
        for position, relpath in enumerate(relpaths):
            if found[position] is None and relpath in members:
                member, data = members[relpath]
                found[position] = (f"{archive}!{member}", data)

    rows: list[dict[str, object]] = []
    rejects: list[Reject] = []
    for subject_id, study_id, relpath, hit in zip(subject_ids, study_ids, relpaths, found):
        if hit is None:
            path, reason = _missing_report(source, archive, relpath)
            rejects.append(Reject(STAGE, path, reason, subject_id, study_id))
            continue
        where, data = hit
        text = data.decode("utf-8", errors="replace")
        if not text.strip():
            rejects.append(Reject(STAGE, where, "report is empty", subject_id, study_id))
            continue
        sections = extract_sections(text)
        if sections.findings_text is None:
            rejects.append(Reject(STAGE, where, "no findings, impression or last paragraph",
                                  subject_id, study_id))
            continue
        rows.append({
            "subject_id": subject_id,
            "study_id": study_id,
            "report_path": where,
            "raw_text": text,
            "findings": sections.findings,
            "impression": sections.impression,
            "indication": sections.indication,
            "comparison": sections.comparison,
            "last_paragraph": sections.last_paragraph,
            "labelled_section": sections.labelled_section,
            "findings_text": sections.findings_text,
        })
    reports = pd.DataFrame(rows, columns=schemas.CXR_REPORTS.names)
    reports[["subject_id", "study_id"]] = reports[["subject_id", "study_id"]].astype("int64")
    return reports, rejects


def find_reports_archive(source: MimicSource) -> Path | None:
    """The first `mimic-cxr-reports.zip` or `.tar.gz` in the source's roots, in that order."""
    for root in source.roots:
        for name in mimic_layout.REPORTS_ARCHIVES:
            if (root / name).is_file():
                return root / name
    return None


def read_archive_reports(
    archive: Path, relpaths: Collection[str]
) -> dict[str, tuple[str, bytes]]:
    """The wanted reports in `archive`, by relative path (`files/pXX/...`): (member name, bytes).

    Members are read in memory, never extracted. A .tar.gz cannot seek backwards without
    decompressing again from the start, so it is read in one forward pass; a .zip is indexed
    and only the wanted members are inflated. When two members carry the same report, the
    first wins.
    """
    found: dict[str, tuple[str, bytes]] = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as reports:
            index: dict[str, str] = {}
            for name in reports.namelist():
                relpath = _member_relpath(name)
                if relpath is not None:
                    index.setdefault(relpath, name)
            for relpath in relpaths:
                if relpath in index:
                    found[relpath] = (index[relpath], reports.read(index[relpath]))
        return found
    with tarfile.open(archive, "r|*") as reports:
        for member in reports:
            relpath = _member_relpath(member.name)
            if member.isfile() and relpath in relpaths and relpath not in found:
                found[relpath] = (member.name, reports.extractfile(member).read())
    return found


def _member_relpath(name: str) -> str | None:
    match = _REPORT_MEMBER.search(name)
    return None if match is None else match.group(1)


def _relative_report_paths(studies: pd.DataFrame) -> list[str]:
    layout_paths = [
        mimic_layout.report_relpath(int(subject_id), int(study_id))
        for subject_id, study_id in zip(studies["subject_id"], studies["study_id"])
    ]
    if "report_path" not in studies.columns:
        return layout_paths
    return [
        given.strip() if isinstance(given, str) and given.strip() else default
        for given, default in zip(studies["report_path"], layout_paths)
    ]


def _read_report_file(root: Path | None, relpath: str) -> tuple[str, bytes] | None:
    """(path, bytes), or None when there is no such file; other I/O errors propagate."""
    if root is None:
        return None
    path = root / relpath
    try:
        return str(path), path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _missing_report(source: MimicSource, archive: Path | None, relpath: str) -> tuple[str, str]:
    """(expected path, reason) for a report found neither as a file nor in the archive."""
    looked = []
    if source.dicom_root is not None:
        looked.append(f"no file {source.dicom_root / relpath}")
    if archive is not None:
        looked.append(f"no member ending in {relpath} in {archive}")
    else:
        looked.append(f"no {' or '.join(mimic_layout.REPORTS_ARCHIVES)} in "
                      f"{[str(root) for root in source.roots]}")
    expected = (
        str(source.dicom_root / relpath) if source.dicom_root is not None
        else f"{archive}!{relpath}" if archive is not None
        else relpath
    )
    return expected, "report missing: " + " and ".join(looked)
