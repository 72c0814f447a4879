from pathlib import Path

import pytest

from cpo_pipeline.settings import Secret, load_settings


def test_unset_environment_means_embedded_default_under_working_directory(tmp_path):
    settings = load_settings({}, cwd=tmp_path)

    assert settings.data_root == tmp_path / "data"
    assert settings.uses_demo_data
    assert settings.demo_root == tmp_path / "data" / "demo" / "mimic-cxr"
    assert settings.llm_base_url is None and settings.llm_api_key is None


def test_environment_variables_are_read(tmp_path):
    mimic = tmp_path / "mimic"
    mimic.mkdir()
    settings = load_settings(
        {
            "CPO_DATA_ROOT": str(tmp_path / "elsewhere"),
            "MIMIC_CXR_ROOT": str(mimic),
            "CPO_LLM_BASE_URL": "http://127.0.0.1:8000/v1",
            "CPO_LLM_MODEL": "qwen",
            "CPO_POLICY_MODEL": "/models/qwen2.5-vl",
        }
    )

    assert settings.data_root == tmp_path / "elsewhere"
    assert settings.mimic_cxr_root == mimic
    assert not settings.uses_demo_data
    assert settings.llm_base_url == "http://127.0.0.1:8000/v1"
    assert settings.llm_model == "qwen"
    assert settings.policy_model == "/models/qwen2.5-vl"


def test_a_mimic_root_that_is_not_a_directory_is_an_error_naming_the_variable(tmp_path):
    with pytest.raises(NotADirectoryError, match="MIMIC_CXR_JPG_ROOT"):
        load_settings({"MIMIC_CXR_JPG_ROOT": str(tmp_path / "missing")})


def test_api_key_never_shows_in_repr_or_str():
    settings = load_settings({"CPO_LLM_API_KEY": "sk-very-secret"}, cwd=Path("/tmp"))

    assert settings.llm_api_key.reveal() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.llm_api_key)
    assert "sk-very-secret" not in f"{settings.llm_api_key!r} {settings.llm_api_key}"
    assert repr(Secret("x")) == "Secret('***')"
