"""Environment → typed settings: where data lives, which MIMIC-CXR copy, which LLM and policy model.

Every variable is optional. Unset means the embedded default: a synthetic MIMIC-CXR tree under the
data root, the offline concept-graph expert, and a tiny policy model built from a config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cpo_pipeline import data_layout

DATA_ROOT_ENV = "CPO_DATA_ROOT"
MIMIC_CXR_ROOT_ENV = "MIMIC_CXR_ROOT"
MIMIC_CXR_JPG_ROOT_ENV = "MIMIC_CXR_JPG_ROOT"
LLM_BASE_URL_ENV = "CPO_LLM_BASE_URL"
LLM_MODEL_ENV = "CPO_LLM_MODEL"
LLM_API_KEY_ENV = "CPO_LLM_API_KEY"
POLICY_MODEL_ENV = "CPO_POLICY_MODEL"

# Every variable the pipeline reads, for whatever must run with none of them set (the test
# suite's clean environment, the benchmarks), so that a developer's own settings never reach it.
# Names read by other modules are spelled here beside their reader; cpo_pipeline_tests/
# test_environment_variables.py fails when a module spells a CPO_* or MIMIC_* name missing here,
# or when a name here is read nowhere.
# MLFLOW_TRACKING_URI is MLflow's own name, but the pipeline reads it as its choice of training
# store: left set, a team server would receive the tests' and benchmarks' runs, so it belongs.
# The Hugging Face offline switches (HF_HUB_OFFLINE is read by training/preflight.py) and RANK
# do not: the suite and the benchmarks set the first themselves (`HUGGING_FACE_OFFLINE`), and the
# second is the launcher's to set, not a user's setting.
PIPELINE_ENVIRONMENT = (
    DATA_ROOT_ENV,
    MIMIC_CXR_ROOT_ENV,
    MIMIC_CXR_JPG_ROOT_ENV,
    LLM_BASE_URL_ENV,
    LLM_MODEL_ENV,
    LLM_API_KEY_ENV,
    "CPO_LLM_ALLOWED_HOSTS",  # llm/endpoint_policy.py
    "CPO_LLM_ALLOW_REMOTE_ENDPOINTS",  # llm/endpoint_policy.py
    POLICY_MODEL_ENV,
    "CPO_TRAINING_LAUNCHER",  # resources/pipes_k8s.py
    "CPO_TRAINING_IMAGE",  # resources/pipes_k8s.py
    "CPO_REFRESH_CRON",  # definitions.py, when the code location loads
    "MLFLOW_TRACKING_URI",  # training/tracking.py and the run launch
)
# What keeps the Hugging Face libraries from reaching the hub: the embedded default never needs
# it, and the tests and benchmarks must not depend on a network or a developer's cache.
HUGGING_FACE_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "HF_DATASETS_OFFLINE": "1"}

DEFAULT_DATA_DIRNAME = "data"


@dataclass(frozen=True)
class Secret:
    """A value that never shows itself in repr, str, logs or Dagster metadata; `reveal()` to use it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    data_root: Path
    mimic_cxr_root: Path | None = None
    mimic_cxr_jpg_root: Path | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: Secret | None = field(default=None, repr=False)
    policy_model: str | None = None

    @property
    def uses_demo_data(self) -> bool:
        return self.mimic_cxr_root is None and self.mimic_cxr_jpg_root is None

    @property
    def demo_root(self) -> Path:
        """Where the embedded synthetic MIMIC-CXR tree is generated on first use."""
        return data_layout.demo_tree(self.data_root)


def _optional(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _optional_dir(environ: Mapping[str, str], name: str) -> Path | None:
    value = _optional(environ, name)
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise NotADirectoryError(f"{name}={value!r} is not a directory")
    return path


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read settings from the environment; the data root defaults to ./data under `cwd`."""
    environ = os.environ if environ is None else environ
    data_root = _optional(environ, DATA_ROOT_ENV)
    root = Path(data_root).expanduser() if data_root else (cwd or Path.cwd()) / DEFAULT_DATA_DIRNAME
    api_key = _optional(environ, LLM_API_KEY_ENV)
    return Settings(
        data_root=root.resolve(),
        mimic_cxr_root=_optional_dir(environ, MIMIC_CXR_ROOT_ENV),
        mimic_cxr_jpg_root=_optional_dir(environ, MIMIC_CXR_JPG_ROOT_ENV),
        llm_base_url=_optional(environ, LLM_BASE_URL_ENV),
        llm_model=_optional(environ, LLM_MODEL_ENV),
        llm_api_key=Secret(api_key) if api_key else None,
        policy_model=_optional(environ, POLICY_MODEL_ENV),
    )
