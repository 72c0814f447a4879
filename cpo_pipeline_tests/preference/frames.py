"""Small hand-made tables shaped like counterfactual_trajectories, cxr_studies and cxr_images."""

from __future__ import annotations

import pandas as pd

from cpo_pipeline.preference.assembly import InputVersions, PreparedTrajectories, prepare
from cpo_pipeline.radiology.answer_format import format_trajectory
from cpo_pipeline.storage import content_hash

VERSIONS = InputVersions("trajectories-v1", "studies-v1", "images-v1")
REQUEST = "This radiograph is a patient's; determine the disease."


def factual(study_id: int, findings: str, *diagnoses: str) -> dict:
    return {"study_id": study_id, "kind": "factual", "target_disease": None,
            "text": format_trajectory(findings, diagnoses or ("No Finding",)),
            "verdict": "factual", "expert_backend": "report", "expert_model": None,
            "prompt_hash": None}


def counterfactual(study_id: int, findings: str, target: str, *diagnoses: str,
                   verdict: str = "accepted") -> dict:
    text = format_trajectory(findings, diagnoses or (target,))
    return {"study_id": study_id, "kind": "counterfactual", "target_disease": target,
            "text": None if verdict == "dead_letter" else text, "verdict": verdict,
            "expert_backend": "openai-compatible", "expert_model": "expert-llm",
            "prompt_hash": "feedfacecafebeef"}


def trajectories(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def studies(splits: dict[int, tuple[int, str]], image_dir: str = "/images") -> pd.DataFrame:
    """cxr_studies' columns the sets read, for {study_id: (subject_id, split)}."""
    return pd.DataFrame([
        {"study_id": study, "subject_id": subject, "split": split, "dicom_id": f"d{study}",
         "image_path": f"{image_dir}/{study}.png"}
        for study, (subject, split) in splits.items()])


def images(studies_frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"dicom_id": studies_frame["dicom_id"],
                         "image_sha256": [content_hash(d) for d in studies_frame["dicom_id"]]})


def prepared(trajectory_rows: pd.DataFrame, studies_frame: pd.DataFrame,
             images_frame: pd.DataFrame | None = None) -> PreparedTrajectories:
    images_frame = images(studies_frame) if images_frame is None else images_frame
    return prepare(trajectory_rows, studies_frame, images_frame, VERSIONS)
