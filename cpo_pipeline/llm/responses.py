"""What one attempt at a chat completion got back: the completion and its token usage, or an
`AttemptFailed` saying why, and whether a retry can help (its `RetryCause`, the server's
Retry-After).

The body is checked by hand rather than parsed into the SDK's models (see `client`): a body of the
wrong shape is a malformed completion, retried like a server error.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Any

import httpx2
import openai


class RetryCause(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # no response in time, or 408
    CONFLICT = "conflict"  # 409
    CONNECTION_ERROR = "connection_error"
    MALFORMED = "malformed_completion"  # not JSON, no choices, empty content
    REJECTED = "rejected_by_validator"


_RETRY_CAUSE_BY_STATUS = {
    408: RetryCause.TIMEOUT,
    409: RetryCause.CONFLICT,
    429: RetryCause.RATE_LIMITED,
}


@dataclass(frozen=True)
class Completion:
    """The text of an acceptable response, the model the server named and the tokens it reported."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int


class AttemptFailed(Exception):
    """An attempt that got no acceptable completion: why, and what a retry should wait for."""

    def __init__(self, reason: str, cause: RetryCause | None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.cause = cause  # None: retrying cannot help
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def request_failure(
    error: openai.APITimeoutError | openai.APIConnectionError | openai.APIStatusError,
    *,
    timeout_s: float,
) -> AttemptFailed:
    """The failure the SDK's `error` stands for: no response in `timeout_s`, no connection, or an
    HTTP error status (retried when 408, 409, 429 or 5xx, after its Retry-After if it has one)."""
    # A timeout is a connection error to the SDK: it is told apart first.
    if isinstance(error, openai.APITimeoutError):
        return AttemptFailed(f"no response within {timeout_s} s", RetryCause.TIMEOUT)
    if isinstance(error, openai.APIConnectionError):
        reason = f"connection failed: {error.__cause__ or error}"
        return AttemptFailed(reason, RetryCause.CONNECTION_ERROR)
    status = error.status_code
    message = error.body.get("message") if isinstance(error.body, dict) else None
    reason = f"HTTP {status}: {message or error.response.text[:200]}"
    cause = _RETRY_CAUSE_BY_STATUS.get(status, RetryCause.SERVER_ERROR if status >= 500 else None)
    return AttemptFailed(
        reason, cause, parse_retry_after(error.response.headers.get("retry-after"))
    )


def json_payload(response: httpx2.Response) -> Any:
    """The response's body as JSON; `AttemptFailed` (malformed) when it is not JSON."""
    try:
        return response.json()
    except ValueError as error:
        raise AttemptFailed(
            f"the response body is not JSON: {response.text[:80]!r}", RetryCause.MALFORMED
        ) from error


def reported_usage(payload: Any) -> tuple[int, int]:
    """Prompt and completion tokens as reported; 0 for whatever is missing or not a count."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    prompt, completion = (c if isinstance(c, int) and c >= 0 else 0 for c in counts)
    return prompt, completion


def read_completion(payload: Any, usage: tuple[int, int], *, default_model: str) -> Completion:
    """The first choice's message; `AttemptFailed` (malformed) when there is none or it is empty.
    `default_model` stands in when the server names no model."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise AttemptFailed("the completion has no choices", RetryCause.MALFORMED)
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise AttemptFailed("the completion's message content is empty", RetryCause.MALFORMED)
    return Completion(
        text=content,
        model=str(payload.get("model") or default_model),
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
    )
