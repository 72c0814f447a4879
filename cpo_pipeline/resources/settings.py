"""The settings resource: run-config overrides on top of the environment, resolved at run time."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from cpo_pipeline import settings as env
from cpo_pipeline.demo.tree import ensure_demo_tree
from cpo_pipeline.ingestion.source import MimicSource, resolve_source


class PipelineSettings(dg.ConfigurableResource):
    """Data root, MIMIC-CXR roots and policy model (the LLM endpoint is the `llm` resource).

    The one place the data root is decided: the IO manager, the image store, the concept graph
    and every cache read it from here. Unset fields come from the environment when a run starts,
    and unset there means the embedded default.
    """

    data_root: str | None = Field(
        default=None,
        description=f"Where tables, images and caches are written. Default: ${env.DATA_ROOT_ENV}, "
        "else ./data.")
    mimic_cxr_root: str | None = Field(
        default=None,
        description=f"Your MIMIC-CXR (DICOM) copy. Default: ${env.MIMIC_CXR_ROOT_ENV}; with "
        "neither root set, the embedded demo tree.")
    mimic_cxr_jpg_root: str | None = Field(
        default=None, description=f"Your MIMIC-CXR-JPG copy. Default: ${env.MIMIC_CXR_JPG_ROOT_ENV}.")
    policy_model: str | None = Field(
        default=None,
        description=f"Vision-language policy model (local path or hub id). Default: "
        f"${env.POLICY_MODEL_ENV}, else the tiny offline model.")

    def resolve(self) -> env.Settings:
        overrides = {
            env.DATA_ROOT_ENV: self.data_root,
            env.MIMIC_CXR_ROOT_ENV: self.mimic_cxr_root,
            env.MIMIC_CXR_JPG_ROOT_ENV: self.mimic_cxr_jpg_root,
            env.POLICY_MODEL_ENV: self.policy_model,
        }
        environ = dict(os.environ)
        environ.update({name: value for name, value in overrides.items() if value is not None})
        return env.load_settings(environ)

    def data_root_path(self) -> Path:
        return self.resolve().data_root

    def mimic_source(self) -> MimicSource:
        """The configured MIMIC-CXR copy; the embedded demo tree, generated on first use, if none."""
        source = resolve_source(self.resolve())
        if source.is_demo:
            ensure_demo_tree(source.dicom_root)
        return source
