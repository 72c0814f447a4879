"""The client over TLS: certificate and hostname are verified, SSL_CERT_FILE is honoured."""

import ssl
import subprocess

import pytest

from cpo_pipeline.llm.client import ChatCompletionError, EndpointConfig, complete
from cpo_pipeline.testing.openai_server import OpenAICompatibleServer


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def tls_server(certificate):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with OpenAICompatibleServer(tls=context) as server:
        yield server


def _config(server):
    return EndpointConfig(server.base_url, "cpo-test-model", max_attempts=1, timeout_s=5)


def test_a_completion_over_https_from_a_certificate_trusted_by_ssl_cert_file(
    tls_server, certificate, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))

    answer = complete(_config(tls_server), [{"role": "user", "content": "small effusion"}])

    assert tls_server.base_url.startswith("https://")
    assert answer == "echo: small effusion"
    assert len(tls_server.chat_requests) == 1


def test_an_untrusted_certificate_is_refused(tls_server, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(ChatCompletionError, match="CERTIFICATE_VERIFY_FAILED"):
        complete(_config(tls_server), [{"role": "user", "content": "small effusion"}])

    assert tls_server.chat_requests == []
