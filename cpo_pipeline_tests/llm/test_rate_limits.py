"""Request- and token-per-minute limits and the Retry-After pause (`llm.rate_limits`), through
the client against the OpenAI-protocol test server."""

import time

from cpo_pipeline.llm.client import RequestCounters, complete_many
from cpo_pipeline.llm.responses import RetryCause
from cpo_pipeline.testing.openai_server import Fault, FaultKind, OpenAICompatibleServer
from cpo_pipeline_tests.llm.endpoints import asking, endpoint, failing_first


def test_a_429_is_retried_no_sooner_than_its_retry_after(cache):
    rate_limited = Fault(FaultKind.HTTP_ERROR, status=429, retry_after="1")
    counters = RequestCounters()
    with OpenAICompatibleServer(faults=failing_first(rate_limited)) as server:
        [result] = complete_many(endpoint(server), asking("p"), cache=cache, counters=counters)
        first, second = server.chat_requests

    assert (result.text, result.attempts) == ("echo: p", 2)
    assert second.received_at - first.received_at >= 1.0
    assert counters.retries == {RetryCause.RATE_LIMITED: 1}


def test_a_requests_per_minute_limit_spaces_requests_beyond_a_one_second_burst(cache):
    # 600 a minute: bursts of 10, then one every 0.1 s.
    with OpenAICompatibleServer() as server:
        config = endpoint(server, concurrency=14, requests_per_minute=600)
        started = time.perf_counter()
        complete_many(config, asking(*map(str, range(14))), cache=cache)
        elapsed = time.perf_counter() - started

    # Timed on the client: the server's own arrival times bunch up when its thread is starved
    # of the GIL, and load can only lengthen the client's wait. Without the limit all 14 would
    # finish in a few milliseconds; with it the last 4 wait 0.1 s each.
    assert elapsed >= 0.35
    assert len(server.chat_requests) == 14


def test_a_tokens_per_minute_limit_charges_the_usage_the_server_reports(cache):
    # Each request is budgeted at 10 tokens (max_tokens) but reports 601; at 1000 tokens a
    # second the third must wait about 0.2 s for the first two's overdraft to be paid back.
    with OpenAICompatibleServer(responder=lambda _: "word " * 600) as server:
        config = endpoint(server, concurrency=1, max_tokens=10, tokens_per_minute=60_000)
        complete_many(config, asking("a", "b", "c"), cache=cache)
        first, _, third = server.chat_requests

    assert third.received_at - first.received_at >= 0.15
