"""The embedded demo tree: generated once under the data root when no MIMIC-CXR copy is configured."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree

_DEMO_COMPLETE_MARKER = ".demo-complete.json"


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
