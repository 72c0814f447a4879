"""One declared Arrow schema per table, shared by writers, readers, asset metadata and tests.

Column lists elsewhere are derived from these (`CXR_STUDIES.names`), never typed again.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.storage import table_fingerprint

_IDS = [pa.field("subject_id", pa.int64(), nullable=False),
        pa.field("study_id", pa.int64(), nullable=False)]
LABEL_FIELDS = [pa.field(name, pa.float32()) for name in CHEXPERT_LABELS]

CXR_IMAGES = pa.schema(
    [
        pa.field("dicom_id", pa.string(), nullable=False),
        *_IDS,
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string(), nullable=False),
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("cols", pa.int32(), nullable=False),
        pa.field("photometric_interpretation", pa.string()),
        pa.field("transfer_syntax_uid", pa.string()),
        pa.field("bits_stored", pa.int32()),
        pa.field("view_position", pa.string()),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)

CXR_REPORTS = pa.schema(
    [
        *_IDS,
        pa.field("report_path", pa.string(), nullable=False),
        pa.field("raw_text", pa.string(), nullable=False),
        pa.field("findings", pa.string()),
        pa.field("impression", pa.string()),
        pa.field("indication", pa.string()),
        pa.field("comparison", pa.string()),
        pa.field("last_paragraph", pa.string()),
        pa.field("labelled_section", pa.string()),
        pa.field("findings_text", pa.string(), nullable=False),
    ]
)

CXR_LABELS = pa.schema(
    [
        pa.field("subject_id", pa.int64()),  # null for the radiologist test-set file
        pa.field("study_id", pa.int64(), nullable=False),
        *LABEL_FIELDS,
        pa.field("label_source", pa.string(), nullable=False),
    ]
)

CXR_STUDIES = pa.schema(
    [
        *_IDS,
        pa.field("split", pa.string(), nullable=False),
        pa.field("dicom_id", pa.string(), nullable=False),
        pa.field("view_position", pa.string()),
        pa.field("lateral_only", pa.bool_(), nullable=False),
        pa.field("n_images", pa.int32(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("findings_text", pa.string(), nullable=False),
        pa.field("findings_source", pa.string(), nullable=False),
        *LABEL_FIELDS,
        pa.field("label_source", pa.string()),
        pa.field("study_datetime", pa.timestamp("ms")),
        pa.field("visit_index", pa.int32(), nullable=False),
        pa.field("stage", pa.int32(), nullable=False),
    ]
)

COUNTERFACTUAL_TRAJECTORIES = pa.schema(
    [
        pa.field("study_id", pa.int64(), nullable=False),
        pa.field("subject_id", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # factual | counterfactual
        # factual: its answer; counterfactual: the diagnosis it replaces ("No Finding" for a normal
        # study), null when the target joins the study's diagnoses (e.g. Atelectasis beside the
        # Lung Opacity it implies)
        pa.field("source_diagnosis", pa.string()),
        pa.field("target_disease", pa.string()),  # null for the factual trajectory
        pa.field("text", pa.string()),  # null for a dead letter
        pa.field("findings", pa.string()),
        pa.field("edits", pa.string(), nullable=False),  # JSON list of {op, before, after}
        pa.field("edit_tokens", pa.int32(), nullable=False),
        pa.field("plan", pa.string()),  # JSON perturbation plan with its justifying edges
        pa.field("expert_backend", pa.string(), nullable=False),
        pa.field("expert_model", pa.string()),
        pa.field("prompt_hash", pa.string()),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("verdict_reason", pa.string(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("prompt_tokens", pa.int64(), nullable=False),
        pa.field("completion_tokens", pa.int64(), nullable=False),
        pa.field("latency_s", pa.float64(), nullable=False),
        pa.field("input_key", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)

INGEST_REJECTS = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("subject_id", pa.int64()),
        pa.field("study_id", pa.int64()),
        pa.field("dicom_id", pa.string()),
    ]
)

# The concept graph as tables (the node-link JSON beside them is what later stages load).
CONCEPT_NODES = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("group", pa.string()),
        pa.field("synonyms", pa.list_(pa.string()), nullable=False),
        pa.field("study_count", pa.int64(), nullable=False),
    ]
)

CONCEPT_EDGES = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("relation", pa.string(), nullable=False),
        pa.field("provenance", pa.string(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),
        pa.field("support", pa.int64(), nullable=False),
        pa.field("rationale", pa.string(), nullable=False),
        pa.field("lift", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("model", pa.string()),
        # Where an exclusion holds: null anywhere, "same side", "same lesion".
        pa.field("scope", pa.string()),
    ]
)

# Preference data (`cpo_pipeline.preference`). Every row carries its lineage: the study, patient,
# official split and image it came from, the trajectories it was cut from (their ids are
# `preference.assembly.trajectory_ids`), who wrote the rejected text, the user turn's hash and
# the data versions of the inputs.
_LINEAGE_IMAGE = [
    *_IDS[::-1],
    pa.field("split", pa.string(), nullable=False),
    pa.field("dicom_id", pa.string(), nullable=False),
    pa.field("image_path", pa.string(), nullable=False),
    pa.field("image_sha256", pa.string(), nullable=False),
]
_LINEAGE_VERSIONS = [
    pa.field("prompt_hash", pa.string(), nullable=False),
    pa.field("trajectories_version", pa.string(), nullable=False),
    pa.field("studies_version", pa.string(), nullable=False),
    pa.field("images_version", pa.string(), nullable=False),
]

SFT_DATASET = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        *_LINEAGE_IMAGE,
        pa.field("prompt", pa.string(), nullable=False),  # the user turn's request
        pa.field("completion", pa.string(), nullable=False),  # the factual trajectory
        pa.field("diagnosis", pa.string(), nullable=False),  # X of its answer line
        pa.field("trajectory_id", pa.string(), nullable=False),
        pa.field("expert_backend", pa.string(), nullable=False),
        pa.field("expert_model", pa.string()),
        pa.field("expert_prompt_hash", pa.string()),
        *_LINEAGE_VERSIONS,
    ]
)

# preference_pairs (CPO), random_negative_pairs (DPO baseline), diagnosis_only_pairs (ablation).
PREFERENCE_PAIRS = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        *_LINEAGE_IMAGE,
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("chosen_diagnosis", pa.string(), nullable=False),
        pa.field("rejected_diagnosis", pa.string(), nullable=False),
        pa.field("target_disease", pa.string()),  # the counterfactual's; null for a random negative
        pa.field("chosen_trajectory_id", pa.string(), nullable=False),
        pa.field("rejected_trajectory_id", pa.string(), nullable=False),
        # The study the rejected text was written for: the pair's own but for random negatives.
        pa.field("rejected_study_id", pa.int64(), nullable=False),
        pa.field("expert_backend", pa.string(), nullable=False),  # of the rejected text
        pa.field("expert_model", pa.string()),
        pa.field("expert_prompt_hash", pa.string()),
        *_LINEAGE_VERSIONS,
    ]
)

TABLES: dict[str, pa.Schema] = {
    "cxr_images": CXR_IMAGES,
    "cxr_reports": CXR_REPORTS,
    "cxr_labels": CXR_LABELS,
    "cxr_studies": CXR_STUDIES,
    "ingest_rejects": INGEST_REJECTS,
    "counterfactual_trajectories": COUNTERFACTUAL_TRAJECTORIES,
    "concept_nodes": CONCEPT_NODES,
    "concept_edges": CONCEPT_EDGES,
    "sft_dataset": SFT_DATASET,
    "preference_pairs": PREFERENCE_PAIRS,
    "random_negative_pairs": PREFERENCE_PAIRS,
    "diagnosis_only_pairs": PREFERENCE_PAIRS,
}


class SchemaMismatchError(ValueError):
    pass


def conform(table: pa.Table, name: str) -> pa.Table:
    """Order and cast `table` to the declared schema of table `name` (if it has one).

    Missing or undeclared columns are an error naming both sets: silently dropping or inventing
    columns is how data contracts rot.
    """
    schema = TABLES.get(name)
    if schema is None:
        return table
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise SchemaMismatchError(
            f"table {name!r} does not match its declared schema: missing {missing}, undeclared {extra}"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise SchemaMismatchError(f"table {name!r}: cannot cast to declared schema: {error}") from error


def content_version(frame: pd.DataFrame, name: str) -> str:
    """The data version of table `name` as it will be written: the fingerprint of the conformed
    Arrow table, so the same rows give the same version whatever pandas dtypes they came in."""
    return table_fingerprint(conform(pa.Table.from_pandas(frame, preserve_index=False), name))
