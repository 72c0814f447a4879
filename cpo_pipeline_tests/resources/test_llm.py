import dagster as dg
import pytest

from cpo_pipeline.resources.llm import LLMEndpointResource
from cpo_pipeline.settings import Secret


def test_no_base_url_anywhere_means_offline_mode():
    assert LLMEndpointResource().endpoint_config() is None


def test_the_endpoint_comes_from_the_environment_with_the_key_only_from_there(monkeypatch):
    monkeypatch.setenv("CPO_LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("CPO_LLM_MODEL", "qwen2.5-7b-instruct")
    monkeypatch.setenv("CPO_LLM_API_KEY", "sk-from-env")

    config = LLMEndpointResource(concurrency=8, requests_per_minute=600).endpoint_config()

    assert (config.base_url, config.model) == ("http://127.0.0.1:8000/v1", "qwen2.5-7b-instruct")
    assert config.api_key == Secret("sk-from-env")
    assert (config.concurrency, config.requests_per_minute, config.tokens_per_minute) == (
        8,
        600,
        None,
    )
    assert (config.temperature, config.max_tokens, config.timeout_s, config.max_attempts) == (
        0.2,
        512,
        60.0,
        5,
    )
    assert "api_key" not in LLMEndpointResource.model_fields


def test_resource_fields_override_the_environment(monkeypatch):
    monkeypatch.setenv("CPO_LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("CPO_LLM_MODEL", "env-model")

    config = LLMEndpointResource(
        base_url="http://localhost:9000/v1", model="field-model"
    ).endpoint_config()

    assert (config.base_url, config.model) == ("http://localhost:9000/v1", "field-model")


def test_allowed_hosts_and_the_remote_switch_combine_fields_and_environment(monkeypatch):
    monkeypatch.setenv("CPO_LLM_ALLOWED_HOSTS", "gpu-box.lab")
    resource = LLMEndpointResource(base_url="http://a.lab/v1", model="m", allowed_hosts=["b.lab"])

    assert resource.endpoint_config().allowed_hosts == ("b.lab", "gpu-box.lab")
    assert not resource.endpoint_config().allow_remote
    monkeypatch.setenv("CPO_LLM_ALLOW_REMOTE_ENDPOINTS", "1")
    assert resource.endpoint_config().allow_remote
    assert (
        LLMEndpointResource(base_url="http://a.lab/v1", model="m", allow_remote_endpoints=True)
        .endpoint_config()
        .allow_remote
    )


def test_a_base_url_without_a_model_is_an_error_naming_the_variable():
    with pytest.raises(ValueError, match="CPO_LLM_MODEL"):
        LLMEndpointResource(base_url="http://127.0.0.1:8000/v1").endpoint_config()


def test_the_resource_resolves_inside_an_asset(monkeypatch):
    monkeypatch.setenv("CPO_LLM_MODEL", "m")

    @dg.asset
    def endpoint_model(llm: LLMEndpointResource) -> str:
        return llm.endpoint_config().model

    result = dg.materialize(
        [endpoint_model], resources={"llm": LLMEndpointResource(base_url="http://127.0.0.1:1/v1")}
    )

    assert result.output_for_node("endpoint_model") == "m"
