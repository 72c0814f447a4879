"""Which MIMIC-CXR tree the pipeline reads, and the tree's manifest hash."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cpo_pipeline import mimic_layout
from cpo_pipeline.settings import Settings
from cpo_pipeline.storage import content_hash, sha256_file


@dataclass(frozen=True)
class MimicSource:
    """The configured release roots. Index tables may sit in either root (users often keep the
    JPG release's tables beside the DICOM files); `find_table` looks in both."""

    dicom_root: Path | None
    jpg_root: Path | None
    is_demo: bool

    @property
    def roots(self) -> tuple[Path, ...]:
        # Both variables may name one tree (a copy holding both releases): list it once.
        return tuple(dict.fromkeys(r for r in (self.dicom_root, self.jpg_root) if r is not None))

    def find_table(self, name: str) -> Path | None:
        """`name` (e.g. `cxr-record-list.csv`) gzipped or not, from the first root that has it."""
        for root in self.roots:
            for candidate in (root / f"{name}.gz", root / name):
                if candidate.is_file():
                    return candidate
        return None


def resolve_source(settings: Settings) -> MimicSource:
    """The configured MIMIC-CXR copy, or the embedded demo tree's place (`demo.tree`
    creates it there)."""
    if settings.uses_demo_data:
        return MimicSource(dicom_root=settings.demo_root, jpg_root=None, is_demo=True)
    return MimicSource(settings.mimic_cxr_root, settings.mimic_cxr_jpg_root, is_demo=False)


_MANIFEST_TABLES = (
    mimic_layout.RECORD_LIST,
    mimic_layout.STUDY_LIST,
    mimic_layout.METADATA,
    mimic_layout.SPLIT,
    mimic_layout.CHEXPERT,
    mimic_layout.NEGBIO,
    mimic_layout.TEST_SET_LABELED,
)


def source_manifest(source: MimicSource) -> list[dict[str, object]]:
    """The tree's identity: content hashes of the index tables and report archives, and the
    entries of each shard folder. Ingestion is driven by the index tables, so a release (or a
    re-generated demo) changes the manifest; individual image files are tracked by ingestion's
    own per-file content cache, not here, to keep observation cheap on a 4.7 TB tree."""
    entries: list[dict[str, object]] = []
    for name in _MANIFEST_TABLES:
        path = source.find_table(name)
        if path is not None:
            entries.append({"file": path.name, "bytes": path.stat().st_size,
                            "sha256": sha256_file(path)})
    for root in source.roots:
        for archive in mimic_layout.REPORTS_ARCHIVES:
            path = root / archive
            if path.is_file():
                entries.append({"file": archive, "bytes": path.stat().st_size,
                                "sha256": sha256_file(path)})
        for shard in mimic_layout.SHARDS:
            folder = root / "files" / shard
            if folder.is_dir():
                entries.append({"shard": f"{root.name}/{shard}",
                                "patients": sum(1 for _ in os.scandir(folder))})
    return entries


def manifest_hash(entries: list[dict[str, object]]) -> str:
    return content_hash(entries)
