"""The dataset card written beside each exported set and shown in the Dagster UI."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from cpo_pipeline.mimic_layout import SPLITS

DATA_USE_NOTICE = (
    "Every row is derived from MIMIC-CXR, credentialed data released on PhysioNet "
    "under the PhysioNet Credentialed Health Data License 1.5.0 and its data use agreement. "
    "Do not redistribute these files or the images they reference. Do not share the derived "
    "text (reports, trajectories, pairs) with anyone who is not a credentialed PhysioNet user "
    "bound by the same agreement, and do not send it to a service that may keep it (such as a "
    "public LLM API). Models trained on it inherit these terms: check the agreement before "
    "sharing one."
)

_LINEAGE_COLUMNS = (
    "`study_id`, `subject_id`, `split` (official, from cxr_studies), `dicom_id`, `image_path`, "
    "`image_sha256`; `prompt_hash` (of the user turn); `expert_backend`, `expert_model`, "
    "`expert_prompt_hash` (who wrote the {who} text, with which prompt); `trajectories_version`, "
    "`studies_version`, `images_version` (data versions of the inputs)."
)
SFT_COLUMNS = (
    "`images` (one image, decoded lazily from its path), `messages` (the user turn, then the "
    "factual trajectory as the assistant turn); `example_id` (content hash of prompt, image and "
    "answer), `diagnosis`, `trajectory_id`; " + _LINEAGE_COLUMNS.format(who="answer")
)
PAIR_COLUMNS = (
    "`images` (one image, decoded lazily from its path), `prompt` (the user turn), `chosen` and "
    "`rejected` (one assistant turn each); `pair_id` (content hash of prompt, image, chosen and "
    "rejected), `chosen_diagnosis`, `rejected_diagnosis`, `target_disease`, "
    "`chosen_trajectory_id`, `rejected_trajectory_id`, `rejected_study_id`; "
    + _LINEAGE_COLUMNS.format(who="rejected")
)


def _table(rows: list[tuple[object, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


def rows_per_split(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["split"].value_counts()
    return {split: int(counts.get(split, 0)) for split in SPLITS}


def dataset_card(
    name: str,
    summary: str,
    frame: pd.DataFrame,
    filters: Mapping[str, int],
    lineage: Mapping[str, object],
    columns: str,
) -> str:
    """Markdown: what the set is, rows per split (and studies, patients), the filters with what
    each dropped, lineage (input versions, user turn and its hash, parameters), the columns,
    how to load it, and the MIMIC-CXR data-use notice."""
    counts = rows_per_split(frame)
    per_split = [(split, counts[split],
                  int(frame.loc[frame["split"] == split, "study_id"].nunique()),
                  int(frame.loc[frame["split"] == split, "subject_id"].nunique()))
                 for split in SPLITS]
    sections = [
        f"# {name}",
        summary,
        "## Rows per split",
        _table(per_split, ("split", "rows", "studies", "patients")),
        "## Filters (rows dropped, in order)",
        _table(list(filters.items()), ("filter", "rows")),
        "## Lineage",
        _table([(key, f"`{value}`") for key, value in lineage.items()], ("input", "value")),
        "## Columns",
        columns,
        "## Loading",
        ("```python\nfrom datasets import load_from_disk\n\n"
         f'train = load_from_disk("<data_root>/datasets/{name}/train")  '
         "# images decode lazily, from their files\n```\n\nA split without rows is not written."),
        "## Data use",
        DATA_USE_NOTICE,
    ]
    return "\n\n".join(sections) + "\n"
