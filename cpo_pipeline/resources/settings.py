"""The settings resource: run-config overrides on top of the environment, resolved at run time."""

from __future__ import annotations

import os

import dagster as dg

from cpo_pipeline import settings as env


class PipelineSettings(dg.ConfigurableResource):
    """Data root, MIMIC-CXR roots and policy model (the LLM endpoint is the `llm` resource).

    Every field is optional: unset fields come from the environment (`CPO_DATA_ROOT`,
    `MIMIC_CXR_ROOT`, `MIMIC_CXR_JPG_ROOT`, `CPO_POLICY_MODEL`) when a run starts, and unset
    there means the embedded default.
    """

    data_root: str | None = None
    mimic_cxr_root: str | None = None
    mimic_cxr_jpg_root: str | None = None
    policy_model: str | None = None

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
