"""Which MIMIC-CXR tree the pipeline reads, the embedded demo tree, and the tree's manifest hash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cpo_pipeline import layout
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.settings import Settings
from cpo_pipeline.storage import sha256_file

_DEMO_COMPLETE_MARKER = ".demo-complete.json"


@dataclass(frozen=True)
class MimicSource:
    """The configured release roots. Index tables may sit in either root (users often keep the
    JPG release's tables beside the DICOM files); `find_table` looks in both."""

    dicom_root: Path | None
    jpg_root: Path | None
    is_demo: bool

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(root for root in (self.dicom_root, self.jpg_root) if root is not None)

    def find_table(self, name: str) -> Path | None:
        """`name` (e.g. `cxr-record-list.csv`) gzipped or not, from the first root that has it."""
        for root in self.roots:
            for candidate in (root / f"{name}.gz", root / name):
                if candidate.is_file():
                    return candidate
        return None


def ensure_demo_tree(root: Path, config: DemoConfig | None = None) -> Path:
    """Create the demo tree at `root` once; a half-written tree (crash, kill) is rebuilt.

    Generation happens in a sibling folder renamed into place, so concurrent runs never read a
    partial tree; the loser of a race discards its copy.
    """
    config = config or DemoConfig()
    marker = root / _DEMO_COMPLETE_MARKER
    if marker.is_file():
        return root
    staging = root.with_name(f".{root.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    summary = write_demo_tree(staging, config)
    (staging / _DEMO_COMPLETE_MARKER).write_text(
        json.dumps({"seed": config.seed, "patients": summary.patients, "studies": summary.studies,
                    "images": summary.images, "release": config.release})
    )
    if root.exists() and not marker.is_file():
        shutil.rmtree(root)
    try:
        staging.rename(root)
    except OSError:
        if not marker.is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return root


def resolve_source(settings: Settings) -> MimicSource:
    """The configured MIMIC-CXR copy, or the embedded demo tree (created on first use)."""
    if settings.uses_demo_data:
        return MimicSource(dicom_root=ensure_demo_tree(settings.demo_root), jpg_root=None,
                           is_demo=True)
    return MimicSource(settings.mimic_cxr_root, settings.mimic_cxr_jpg_root, is_demo=False)


_MANIFEST_TABLES = (
    layout.RECORD_LIST,
    layout.STUDY_LIST,
    layout.METADATA,
    layout.SPLIT,
    layout.CHEXPERT,
    layout.NEGBIO,
    layout.TEST_SET_LABELED,
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
        for archive in layout.REPORTS_ARCHIVES:
            path = root / archive
            if path.is_file():
                entries.append({"file": archive, "bytes": path.stat().st_size,
                                "sha256": sha256_file(path)})
        for shard in layout.SHARDS:
            folder = root / "files" / shard
            if folder.is_dir():
                entries.append({"shard": f"{root.name}/{shard}",
                                "patients": sum(1 for _ in os.scandir(folder))})
    return entries


def manifest_hash(entries: list[dict[str, object]]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
