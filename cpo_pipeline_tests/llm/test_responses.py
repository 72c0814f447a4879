"""What a response means: which failures are retried under which cause, which are dead letters,
and how Retry-After is read (`llm.responses`)."""

import pytest

from cpo_pipeline.llm.client import RequestCounters, complete_many, response_key
from cpo_pipeline.llm.responses import RetryCause, parse_retry_after
from cpo_pipeline.testing.openai_server import Fault, FaultKind, OpenAICompatibleServer
from cpo_pipeline_tests.llm.endpoints import asking, endpoint, failing_first


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault(FaultKind.HTTP_ERROR, status=500), RetryCause.SERVER_ERROR),
        (Fault(FaultKind.HTTP_ERROR, status=503), RetryCause.SERVER_ERROR),
        (Fault(FaultKind.HANG, hang_s=3.0), RetryCause.TIMEOUT),
        (Fault(FaultKind.CLOSE_CONNECTION), RetryCause.CONNECTION_ERROR),
        (Fault(FaultKind.GARBAGE_BODY), RetryCause.MALFORMED),
        (Fault(FaultKind.EMPTY_CONTENT), RetryCause.MALFORMED),
    ],
    ids=["500", "503", "timeout", "closed-connection", "garbage-body", "empty-content"],
)
def test_a_transient_failure_is_retried_then_succeeds(cache, fault, cause):
    counters = RequestCounters()
    with OpenAICompatibleServer(faults=failing_first(fault)) as server:
        config = endpoint(server, timeout_s=0.3)
        [result] = complete_many(config, asking("p"), cache=cache, counters=counters)

    assert (result.text, result.attempts, result.error) == ("echo: p", 2, None)
    assert counters.retries == {cause: 1}
    assert counters.requests_sent == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(FaultKind.EMPTY_CHOICES), "the completion has no choices"),
        (Fault(FaultKind.EMPTY_CONTENT), "the completion's message content is empty"),
        (
            Fault(FaultKind.GARBAGE_BODY),
            "the response body is not JSON: '<html>502 upstream garbage'",
        ),
    ],
    ids=["empty-choices", "empty-content", "garbage-body"],
)
def test_a_malformed_completion_is_retried_then_dead_lettered_without_failing_the_batch(
    cache, fault, reason
):
    counters = RequestCounters()
    with OpenAICompatibleServer(faults=lambda r: fault if r.prompt == "bad" else None) as server:
        config = endpoint(server, max_attempts=3)
        bad, good = complete_many(config, asking("bad", "good"), cache=cache, counters=counters)
        sent_for_bad = [r for r in server.chat_requests if r.prompt == "bad"]

    assert (bad.text, bad.attempts, bad.ok) == (None, 3, False)
    assert bad.error == f"{reason} (gave up after 3 attempts)"
    assert len(sent_for_bad) == 3
    assert good.text == "echo: good"
    assert (counters.dead_letters, counters.retries[RetryCause.MALFORMED]) == (1, 2)
    assert cache.get_many([response_key(config, r) for r in asking("bad")]) == {}


def test_a_400_is_not_retried_and_the_dead_letter_carries_the_status_and_message(cache):
    bad_request = Fault(FaultKind.HTTP_ERROR, status=400)
    with OpenAICompatibleServer(faults=lambda _: bad_request) as server:
        [result] = complete_many(endpoint(server), asking("p"), cache=cache)
        sent = len(server.chat_requests)

    assert result.error == "HTTP 400: injected Bad Request (gave up after 1 attempt)"
    assert (result.attempts, sent) == (1, 1)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("Wed, 21 Oct 2015 07:28:05 GMT", 5.0)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    wed_21_oct_2015_07_28_00_utc = 1445412480.0

    assert parse_retry_after(header, now=wed_21_oct_2015_07_28_00_utc) == seconds


@pytest.mark.parametrize("header", [None, "soon", "inf"])
def test_an_unusable_retry_after_is_ignored(header):
    assert parse_retry_after(header) is None
