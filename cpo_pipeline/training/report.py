"""What a finished run reports: the summary's figures as flat materialization metadata, and the
Hugging Face model card written beside the weights.

Plain Python: the entry point reports this metadata through Dagster Pipes, and the asset
reports the same from the stored summary when it skips an unchanged run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cpo_pipeline.preference.card import DATA_USE_NOTICE
from cpo_pipeline.training.config import DPO

# Trainer metric names → metadata names (the final evaluation after training).
HEADLINE_METRICS = {
    "train_loss": "train_loss",
    "final_train_loss": "final_train_loss",
    "final_train_rewards/accuracies": "reward_accuracy",
    "final_train_rewards/margins": "reward_margin",
    "final_eval_loss": "eval_loss",
    "final_eval_rewards/accuracies": "eval_reward_accuracy",
    "final_eval_rewards/margins": "eval_reward_margin",
    "final_eval_mean_token_accuracy": "eval_mean_token_accuracy",
    "final_train_mean_token_accuracy": "train_mean_token_accuracy",
}
# Metadata holding a filesystem path (shown as one in the Dagster UI).
PATH_KEYS = ("checkpoint_dir",)
PATH, JSON = "path", "json"


def headline_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {label: float(metrics[key]) for key, label in HEADLINE_METRICS.items()
            if key in metrics}


def summary_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a user looks at first, flat and JSON-typed (Pipes and Dagster take both)."""
    mlflow = summary.get("mlflow") or {}
    sample = summary.get("sample") or {}
    metadata: dict[str, Any] = {
        "stage": summary["stage"],
        "checkpoint_dir": summary["model_dir"],
        "base_model": summary["base_model"],
        "starting_model": summary["starting_model"],
        "dataset": summary.get("dataset_name") or summary["dataset_dir"],
        "dataset_rows": summary["dataset_rows"],
        "dataset_fingerprint": summary["dataset_fingerprint"],
        "global_step": summary["global_step"],
        "world_size": summary["world_size"],
        "train_samples_per_second": summary["train_samples_per_second"],
        "train_runtime_s": summary["train_runtime_s"],
        "resumed_from_step": summary.get("resumed_from_step") or 0,
        "trainable_parameters": summary["trainable_parameters"],
        "total_parameters": summary["total_parameters"],
        **headline_metrics(summary["metrics"]),
        "recipe": summary["recipe"],
    }
    if summary["stage"] == DPO:
        metadata["reference_model"] = (summary.get("reference_model")
                                       or summary["starting_model"])
    if mlflow:
        metadata.update(mlflow_run_id=mlflow["run_id"], mlflow_tracking_uri=mlflow["tracking_uri"])
        if mlflow.get("link"):
            metadata["mlflow_run"] = mlflow["link"]
    if sample:
        metadata.update(sample_answer=sample["answer"],
                        sample_follows_answer_format=sample["follows_trajectory_format"])
    return metadata


def metadata_type(key: str, value: Any) -> str | None:
    """The Dagster metadata type a value needs spelled out (None: a plain scalar)."""
    if key in PATH_KEYS:
        return PATH
    if isinstance(value, dict | list):
        return JSON
    return None


def _table(rows: list[tuple[object, object]], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += ["| " + str(key) + " | " + str(value).replace("|", "\\|") + " |"
              for key, value in rows]
    return "\n".join(lines)


def model_card(summary: Mapping[str, Any], title: str) -> str:
    """README.md in the Hugging Face convention: YAML front matter, then base model, data and
    its version, recipe, metrics, limitations and the MIMIC-CXR data-use notice."""
    stage = summary["stage"]
    method = ("Direct preference optimisation (TRL DPOTrainer, sigmoid loss), reference = the "
              "starting model" if stage == DPO else "Supervised fine-tuning (TRL SFTTrainer) "
              "on the answer tokens")
    front = {
        "base_model": summary["base_model"],
        "library_name": "transformers",
        "pipeline_tag": "image-text-to-text",
        "license": "other",
        "license_name": "physionet-credentialed-health-data-1.5.0",
        "tags": ["trl", stage, "cpo", "chest-x-ray", "mimic-cxr", "lora"],
    }
    front_matter = "\n".join(f"{key}: {json.dumps(value)}" for key, value in front.items())
    sample = summary.get("sample") or {}
    sections = [
        f"---\n{front_matter}\n---",
        f"# {title}",
        (f"{method}, trained by cpo-pipeline on `{summary.get('dataset_name') or 'a dataset'}`: "
         "chest radiographs with the request to determine the disease, answered "
         "`<think> findings </think> The disease of this patient is X.`"),
        "## Model",
        _table([("base model", f"`{summary['base_model']}`"),
                ("starting model", f"`{summary['starting_model']}`"),
                ("reference model", f"`{summary['starting_model']}`" if stage == DPO else "—"),
                ("data version (weights)", f"`{summary['data_version']}`"),
                ("trainable / total parameters",
                 f"{summary['trainable_parameters']:,} / {summary['total_parameters']:,}")],
               ("", "")),
        "## Data",
        _table([("dataset", f"`{summary.get('dataset_name')}`"),
                ("directory", f"`{summary['dataset_dir']}`"),
                ("rows", summary["dataset_rows"]),
                ("content hash", f"`{summary['dataset_fingerprint']}`")], ("", "")),
        "## Recipe",
        _table(sorted(summary["recipe"].items()), ("parameter", "value")),
        "## Training",
        _table([("steps", summary["global_step"]), ("processes", summary["world_size"]),
                ("samples / s", f"{summary['train_samples_per_second']:.2f}"),
                ("resumed from step", summary.get("resumed_from_step") or "—"),
                ("MLflow run", (summary.get("mlflow") or {}).get("run_id", "—"))], ("", "")),
        "## Metrics",
        _table(sorted(headline_metrics(summary["metrics"]).items()), ("metric", "value")),
    ]
    if sample:
        sections += ["## Sample answer (first training image, greedy)",
                     f"```\n{sample['answer']}\n```"]
    sections += [
        "## Loading",
        ("```python\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
         'model = AutoModelForImageTextToText.from_pretrained("<this directory>")\n'
         'processor = AutoProcessor.from_pretrained("<this directory>")\n```\n\n'
         "The LoRA adapter alone is in `adapter/` (merged into these weights)."),
        "## Limitations",
        ("A research model, not a medical device: it has not been validated for clinical use, "
         "and its answers must not inform care. It learned from one hospital's radiographs and "
         "reports (MIMIC-CXR, Beth Israel Deaconess) and from LLM-written counterfactual text; "
         "expect it to mirror their biases and errors. Trained on the embedded synthetic demo "
         "data or with the tiny offline model, it shows only that the pipeline is wired: it "
         "knows no radiology."),
        "## Data use",
        DATA_USE_NOTICE,
    ]
    return "\n\n".join(sections) + "\n"
