"""The figures a user looks at first after ingestion, as plain data (rendered by the asset)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd
from PIL import Image

from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

_LABEL_STATES = {"positive": 1.0, "uncertain": -1.0, "negative": 0.0}


def label_prevalence(labels: pd.DataFrame) -> pd.DataFrame:
    """Per label, the percentage of studies positive / uncertain / negative / not mentioned."""
    rows = {}
    for label in CHEXPERT_LABELS:
        values = labels[label]
        shares = {state: (values == value).mean() for state, value in _LABEL_STATES.items()}
        shares["blank"] = values.isna().mean()
        rows[label] = {state: round(100 * share, 1) for state, share in shares.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "label (% of studies)"
    return table


def split_view_counts(studies: pd.DataFrame) -> pd.DataFrame:
    """Studies per split and chosen view (lateral-only studies show their lateral view)."""
    table = pd.crosstab(studies["split"], studies["view_position"].fillna("(blank)"))
    table.index.name = "split \\ view"
    return table


def patients_in_several_splits(studies: pd.DataFrame) -> list[int]:
    per_patient = studies.groupby("subject_id")["split"].nunique()
    return sorted(int(s) for s in per_patient.index[per_patient > 1])


def thumbnail_grid(paths: Sequence[str], tile: int = 160, columns: int = 4) -> bytes:
    """A PNG contact sheet of the given (preprocessed) images, each fitted into a square tile."""
    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("L", (columns * tile, rows * tile), color=0)
    for position, path in enumerate(paths):
        with Image.open(path) as image:
            image.thumbnail((tile, tile))
            x = (position % columns) * tile + (tile - image.width) // 2
            y = (position // columns) * tile + (tile - image.height) // 2
            sheet.paste(image, (x, y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
