import asyncio
import dataclasses
import logging

import openai
import pytest

from cpo_pipeline.llm.client import (
    ChatCompletionError,
    ChatRequest,
    EndpointConfig,
    RequestCounters,
    complete,
    complete_many,
    response_key,
    run_chat_requests,
)
from cpo_pipeline.llm.endpoint_policy import EndpointNotAllowedError
from cpo_pipeline.llm.responses import RetryCause
from cpo_pipeline.settings import Secret
from cpo_pipeline.testing.openai_server import Fault, FaultKind, OpenAICompatibleServer
from cpo_pipeline_tests.llm.endpoints import API_KEY, FINDINGS, asking, endpoint


def test_a_completion_carries_the_servers_text_model_and_token_usage(cache):
    messages = [
        {"role": "system", "content": "You are a radiologist."},
        {"role": "user", "content": "Findings: patchy right lower lobe opacity."},
    ]
    counters = RequestCounters()
    with OpenAICompatibleServer(responder=lambda _: FINDINGS) as server:
        [result] = complete_many(
            endpoint(server), [ChatRequest("s1/factual", messages)], cache=cache, counters=counters
        )
        [received] = server.chat_requests

    assert (result.key, result.text, result.model) == ("s1/factual", FINDINGS, "cpo-test-model")
    assert (result.prompt_tokens, result.completion_tokens) == (4 + 6, 14)
    assert (result.attempts, result.cached, result.error, result.ok) == (1, False, None, True)
    assert received.body == {
        "model": "cpo-test-model",
        "messages": messages,
        "temperature": 0.2,
        "max_tokens": 512,
    }
    assert counters.requests_sent == 1
    assert (counters.prompt_tokens, counters.completion_tokens) == (10, 14)


def test_a_completion_the_validator_rejects_is_asked_for_again(cache):
    verdicts = iter(["no diagnosis line", None])
    counters = RequestCounters()
    with OpenAICompatibleServer() as server:
        [result] = complete_many(
            endpoint(server),
            asking("p"),
            cache=cache,
            validate=lambda _: next(verdicts),
            counters=counters,
        )

    assert (result.text, result.attempts) == ("echo: p", 2)
    assert counters.retries == {RetryCause.REJECTED: 1}


def test_a_completion_the_validator_always_rejects_is_dead_lettered_with_its_verdict(cache):
    with OpenAICompatibleServer() as server:
        [result] = complete_many(
            endpoint(server, max_attempts=2),
            asking("p"),
            cache=cache,
            validate=lambda text: f"{text!r} has no diagnosis line",
        )

    assert result.error == (
        "rejected by the validator: 'echo: p' has no diagnosis line (gave up after 2 attempts)"
    )


def test_no_more_requests_are_in_flight_than_the_concurrency(cache):
    with OpenAICompatibleServer(delay_s=0.05) as server:
        results = complete_many(
            endpoint(server, concurrency=4), asking(*map(str, range(16))), cache=cache
        )

        assert server.max_in_flight == 4
    assert all(result.ok for result in results)


def test_connections_are_kept_alive_and_reused(cache):
    with OpenAICompatibleServer(delay_s=0.01) as server:
        results = complete_many(
            endpoint(server, concurrency=3), asking(*map(str, range(12))), cache=cache
        )
        connections = {r.connection for r in server.chat_requests}

    assert all(result.ok for result in results)
    assert len(connections) == server.connections_opened == 3


def test_a_proxy_set_in_the_environment_is_bypassed(cache, monkeypatch):
    # A proxy would be one more host receiving report text, one the endpoint policy never checked.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    with OpenAICompatibleServer() as server:
        [result] = complete_many(endpoint(server, max_attempts=1), asking("p"), cache=cache)
        sent = len(server.chat_requests)

    assert (result.text, sent) == ("echo: p", 1)


def test_the_test_server_lists_its_model_like_an_openai_endpoint():
    with OpenAICompatibleServer(model="qwen-test") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        assert [model.id for model in client.models.list()] == ["qwen-test"]


def test_cached_keys_are_answered_without_any_request(cache):
    with OpenAICompatibleServer(responder=lambda _: FINDINGS) as server:
        config = endpoint(server)
        [fresh] = complete_many(config, asking("p"), cache=cache)
        counters = RequestCounters()
        [again] = complete_many(config, asking("p"), cache=cache, counters=counters)
        sent = len(server.chat_requests)

    assert sent == 1
    assert again == dataclasses.replace(fresh, attempts=0, cached=True)
    assert (counters.cache_hits, counters.requests_sent) == (1, 0)


def test_a_changed_prompt_model_or_parameter_is_not_served_from_the_cache():
    config = EndpointConfig("http://127.0.0.1:1/v1", "model-a")
    [request] = asking("p")
    variants = [
        response_key(config, request),
        response_key(config, ChatRequest("other key", request.messages)),
        response_key(config, ChatRequest(request.key, [{"role": "user", "content": "q"}])),
        response_key(dataclasses.replace(config, model="model-b"), request),
        response_key(dataclasses.replace(config, temperature=0.7), request),
        response_key(dataclasses.replace(config, max_tokens=64), request),
    ]

    assert len(set(variants)) == len(variants)
    assert response_key(dataclasses.replace(config, concurrency=2), request) == variants[0]


def test_a_run_cancelled_midway_resumes_without_asking_again_for_answered_keys(cache):
    requests = asking(*(f"study {i}" for i in range(40)))
    with OpenAICompatibleServer(delay_s=0.05) as server:
        config = endpoint(server, concurrency=4)

        async def run_until_ten_are_answered() -> None:
            run = asyncio.create_task(run_chat_requests(config, requests, cache=cache))
            while len(cache) < 10:
                await asyncio.sleep(0.01)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run

        asyncio.run(run_until_ten_are_answered())
        answered = {r.key for r in requests if cache.get_many([response_key(config, r)])}
        sent_before = len(server.chat_requests)
        results = complete_many(config, requests, cache=cache)
        resent = [r.prompt for r in server.chat_requests[sent_before:]]

    assert 10 <= len(answered) < 40
    assert sorted(resent) == sorted(r.key for r in requests if r.key not in answered)
    assert all(result.ok for result in results)
    assert sum(result.cached for result in results) == len(answered)


def test_the_api_key_reaches_the_server_as_a_bearer_token_and_nowhere_else(cache, caplog):
    caplog.set_level(logging.DEBUG)
    unauthorized = Fault(FaultKind.HTTP_ERROR, status=401)
    with OpenAICompatibleServer(
        faults=lambda r: unauthorized if r.prompt == "denied" else None
    ) as server:
        config = endpoint(server)
        results = complete_many(config, asking("allowed", "denied"), cache=cache)
        headers = {r.headers["authorization"] for r in server.chat_requests}
    cache.close()
    stored = b"".join(p.read_bytes() for p in cache.path.parent.glob("responses.sqlite*"))

    assert headers == {f"Bearer {API_KEY}"}
    assert [r.ok for r in results] == [True, False]
    assert b"echo: allowed" in stored
    assert API_KEY.encode() not in stored
    assert any(record.name.startswith("openai") for record in caplog.records)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(results) + repr(config) + str(config)


def test_an_error_message_quoting_the_api_key_is_redacted_in_the_dead_letter(cache):
    quoting = Fault(FaultKind.HTTP_ERROR, status=401, message=f"Incorrect API key: {API_KEY}")
    with OpenAICompatibleServer(faults=lambda _: quoting) as server:
        [result] = complete_many(endpoint(server), asking("p"), cache=cache)

    assert result.error == "HTTP 401: Incorrect API key: *** (gave up after 1 attempt)"


def test_a_remote_endpoint_is_refused_before_any_request(cache):
    config = EndpointConfig("https://api.example.com/v1", "gpt-x", api_key=Secret(API_KEY))

    with pytest.raises(EndpointNotAllowedError, match="'api.example.com'") as refused:
        complete_many(config, asking("p"), cache=cache)
    assert API_KEY not in str(refused.value)


def test_repeated_request_keys_are_an_error_naming_them(cache):
    config = EndpointConfig("http://127.0.0.1:1/v1", "m")

    with pytest.raises(ValueError, match=r"repeated: \['s1'\]"):
        complete_many(config, asking("s1", "s2", "s1"), cache=cache)


def test_progress_is_reported_after_the_cache_lookup_and_when_all_are_done(cache):
    reports = []
    with OpenAICompatibleServer() as server:
        config = endpoint(server)
        complete_many(config, asking("a", "b"), cache=cache)
        complete_many(
            config,
            asking("a", "b", "c", "d"),
            cache=cache,
            on_progress=lambda done, total, counters: reports.append(
                (done, total, counters.cache_hits, counters.requests_sent)
            ),
        )

    assert reports == [(2, 4, 2, 0), (4, 4, 2, 2)]


def test_complete_returns_the_text_of_one_completion():
    with OpenAICompatibleServer(responder=lambda _: FINDINGS) as server:
        assert complete(endpoint(server), [{"role": "user", "content": "p"}]) == FINDINGS


def test_complete_raises_with_the_reason_when_no_completion_is_acceptable():
    not_found = Fault(FaultKind.HTTP_ERROR, status=404)
    with (
        OpenAICompatibleServer(faults=lambda _: not_found) as server,
        pytest.raises(ChatCompletionError, match="HTTP 404: injected Not Found"),
    ):
        complete(endpoint(server), [{"role": "user", "content": "p"}])


def test_the_endpoint_config_hides_the_api_key_and_rejects_nonsense_limits():
    config = EndpointConfig("http://127.0.0.1:1/v1", "m", api_key=Secret(API_KEY))

    assert API_KEY not in repr(config)
    with pytest.raises(ValueError, match="EndpointConfig.concurrency must be positive, got 0"):
        dataclasses.replace(config, concurrency=0)
