import pytest

from cpo_pipeline.llm.endpoint_policy import (
    EndpointNotAllowedError,
    allow_remote_from_env,
    allowed_hosts_from_env,
    check_endpoint_allowed,
    endpoint_host,
)


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("http://127.0.0.1:8000/v1", "127.0.0.1"),
        ("http://127.10.20.30/v1", "127.10.20.30"),
        ("http://localhost:8000/v1", "localhost"),
        ("http://LOCALHOST./v1", "localhost"),
        ("http://[::1]:8000/v1", "::1"),
        ("http://[::ffff:127.0.0.1]:8000/v1", "::ffff:127.0.0.1"),
    ],
)
def test_loopback_endpoints_are_allowed_by_default_under_their_normalised_host(base_url, host):
    assert check_endpoint_allowed(base_url) == host


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.openai.com/v1",
        "http://10.0.0.5:8000/v1",
        "http://0.0.0.0:8000/v1",
        "http://localhost.example.com/v1",
        "http://128.0.0.1/v1",
    ],
)
def test_other_endpoints_are_refused_by_default(base_url):
    with pytest.raises(EndpointNotAllowedError):
        check_endpoint_allowed(base_url)


def test_the_refusal_names_the_host_and_both_settings_that_would_allow_it():
    with pytest.raises(EndpointNotAllowedError) as refused:
        check_endpoint_allowed("https://user:hunter2@llm.example.org:443/v1")

    message = str(refused.value)
    assert "'llm.example.org'" in message
    assert "CPO_LLM_ALLOWED_HOSTS" in message
    assert "CPO_LLM_ALLOW_REMOTE_ENDPOINTS=1" in message
    assert "hunter2" not in message


def test_an_allow_listed_host_is_allowed_whatever_its_case():
    host = check_endpoint_allowed("http://GPU-Box.lab:8000/v1", allowed_hosts=["gpu-box.lab"])

    assert host == "gpu-box.lab"


def test_allow_remote_allows_any_host():
    assert (
        check_endpoint_allowed("https://api.openai.com/v1", allow_remote=True) == "api.openai.com"
    )


@pytest.mark.parametrize("base_url", ["127.0.0.1:8000/v1", "ftp://127.0.0.1/v1", "http:///v1"])
def test_a_base_url_without_http_scheme_and_host_is_an_error(base_url):
    with pytest.raises(ValueError, match=r"http\(s\)://host"):
        endpoint_host(base_url)


def test_allowed_hosts_are_read_comma_separated_from_the_environment():
    environ = {"CPO_LLM_ALLOWED_HOSTS": " gpu-box.lab, [fd00::1] ,,Other.Host. "}

    assert allowed_hosts_from_env(environ) == ("gpu-box.lab", "fd00::1", "other.host")
    assert allowed_hosts_from_env({}) == ()


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("Yes", True), ("0", False), ("", False)]
)
def test_allow_remote_is_read_as_a_yes_no_flag(value, expected):
    assert allow_remote_from_env({"CPO_LLM_ALLOW_REMOTE_ENDPOINTS": value}) is expected


def test_an_unreadable_allow_remote_value_is_an_error_naming_the_variable():
    with pytest.raises(ValueError, match="CPO_LLM_ALLOW_REMOTE_ENDPOINTS='maybe'"):
        allow_remote_from_env({"CPO_LLM_ALLOW_REMOTE_ENDPOINTS": "maybe"})
