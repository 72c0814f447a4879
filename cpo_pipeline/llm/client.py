"""Chat completions from an OpenAI-compatible endpoint: bounded, rate-limited, retried and cached.

`run_chat_requests` is the one way the pipeline talks to an LLM. It refuses endpoints the data use
agreement does not allow (`endpoint_policy`), answers what the response cache already holds without
a request, and sends the rest through `AsyncOpenAI` with `concurrency` requests in flight, request-
and token-per-minute limits (`rate_limits`), and its own retries (the SDK's are off, so every retry
is counted; `responses` says which failures a retry can help).
One bad item never fails the batch: it comes back as a dead letter, with the reason.

httpx2's stock transport (the SDK's default) carries the requests, its pool sized to
`concurrency` so every worker keeps its connection alive; that meets the client's target, >= 300
requests/s at concurrency 128 against a 200 ms server with <= 3 ms of client CPU per request
(`benchmarks/bench_llm_client.py`).

The API key lives in `EndpointConfig.api_key` (a `Secret`) and goes only into the Authorization
header: never into a message, a log line, the cache or a result.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import httpx2
import openai

from cpo_pipeline.llm.endpoint_policy import check_endpoint_allowed
from cpo_pipeline.llm.rate_limits import RateLimiter, estimated_tokens
from cpo_pipeline.llm.response_cache import CachedResponse, ResponseCache
from cpo_pipeline.llm.responses import (
    AttemptFailed,
    Completion,
    RetryCause,
    json_payload,
    read_completion,
    reported_usage,
    request_failure,
)
from cpo_pipeline.settings import Secret
from cpo_pipeline.storage import content_hash

# The SDK insists on a key; local servers (vLLM, llama.cpp) ignore it. A placeholder, and never
# OPENAI_API_KEY from the environment, which belongs to some other endpoint.
_NO_API_KEY = "no-key"
_ONE_OFF_KEY = "one-off"

Messages = list[dict[str, Any]]
# Returns why a completion is unacceptable (it is then retried), or None to accept it.
Validator = Callable[[str], str | None]


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to ask for completions; a None per-minute limit means no limit."""

    base_url: str
    model: str
    api_key: Secret | None = field(default=None, repr=False)
    temperature: float = 0.2
    max_tokens: int = 512
    timeout_s: float = 60.0
    concurrency: int = 32
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    allow_remote: bool = False
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = {
            "max_tokens": self.max_tokens,
            "timeout_s": self.timeout_s,
            "concurrency": self.concurrency,
            "max_attempts": self.max_attempts,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
        }
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ValueError(f"EndpointConfig.{name} must be positive, got {value!r}")
        if not self.model:
            raise ValueError("EndpointConfig.model must name the model to ask")

    @property
    def parameters(self) -> dict[str, Any]:
        """The generation parameters sent with every request (and part of every cache key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class ChatRequest:
    """One conversation to complete; `key` names the work (study + purpose), unique per batch."""

    key: str
    messages: Messages


@dataclass(frozen=True)
class ChatResult:
    """A completion, or a dead letter (`text` None, `error` says why).

    Tokens and latency are those of the response whose text is returned (for a cached result, of
    the response when it was first received); tokens spent on rejected attempts are counted in
    `RequestCounters`, not here.
    """

    key: str
    text: str | None
    model: str  # as the server named it; the configured model for dead letters
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    cached: bool
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RequestCounters:
    """What a batch cost. Pass the same instance to several calls to add them up."""

    requests_sent: int = 0
    cache_hits: int = 0
    dead_letters: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: Counter[RetryCause] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        """Flat and with every retry cause present, for logs and asset metadata."""
        return {
            "requests_sent": self.requests_sent,
            "cache_hits": self.cache_hits,
            "dead_letters": self.dead_letters,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            **{f"retries_{cause}": self.retries[cause] for cause in RetryCause},
        }


# on_progress(done, total, counters): done counts cache hits, completions and dead letters.
ProgressCallback = Callable[[int, int, RequestCounters], None]


class ChatCompletionError(RuntimeError):
    """`complete` got no acceptable completion."""


def response_key(config: EndpointConfig, request: ChatRequest) -> str:
    """The cache key: the request's key, the prompt's hash, the model and generation parameters."""
    return content_hash(
        {
            "key": request.key,
            "prompt_sha256": content_hash(request.messages),
            "model": config.model,
            "parameters": config.parameters,
        }
    )


async def run_chat_requests(
    config: EndpointConfig,
    requests: Sequence[ChatRequest],
    *,
    cache: ResponseCache | None,
    validate: Validator | None = None,
    on_progress: ProgressCallback | None = None,
    counters: RequestCounters | None = None,
    progress_interval_s: float = 10.0,
) -> list[ChatResult]:
    """Complete every request, in order; cached ones without a request, failures as dead letters.

    Raises only before sending anything: `EndpointNotAllowedError` for an endpoint the policy
    refuses, `ValueError` for repeated request keys. Each successful response is committed to
    `cache` (None = no caching) as it arrives, so a cancelled run keeps what it was answered.
    `on_progress` is called at most every `progress_interval_s`, and once when all are done.
    """
    check_endpoint_allowed(
        config.base_url, allowed_hosts=config.allowed_hosts, allow_remote=config.allow_remote
    )
    _reject_repeated_keys(requests)
    counters = RequestCounters() if counters is None else counters
    progress = _ProgressReporter(len(requests), on_progress, counters, progress_interval_s)
    cache_keys = [response_key(config, request) for request in requests]
    hits = cache.get_many(cache_keys) if cache is not None else {}
    results: list[ChatResult | None] = [
        _cached_result(request.key, hits[cache_key]) if cache_key in hits else None
        for request, cache_key in zip(requests, cache_keys)
    ]
    pending = [index for index, result in enumerate(results) if result is None]
    counters.cache_hits += len(requests) - len(pending)
    progress.advance(len(requests) - len(pending))
    if pending:
        next_pending = iter(pending)

        async def work(session: _EndpointSession) -> None:
            # Workers share one iterator, so `concurrency` requests are in flight until it runs dry.
            for index in next_pending:
                result = await session.chat(requests[index], validate)
                if result.ok and cache is not None:
                    cache.put(cache_keys[index], _cache_entry(result))
                results[index] = result
                progress.advance(1)

        async with _EndpointSession(config, counters) as session, asyncio.TaskGroup() as group:
            for _ in range(min(config.concurrency, len(pending))):
                group.create_task(work(session))
    return [result for result in results if result is not None]


def complete_many(
    config: EndpointConfig,
    requests: Sequence[ChatRequest],
    *,
    cache: ResponseCache | None,
    validate: Validator | None = None,
    on_progress: ProgressCallback | None = None,
    counters: RequestCounters | None = None,
) -> list[ChatResult]:
    """`run_chat_requests` from synchronous code (an asset body): runs its own event loop."""
    return asyncio.run(
        run_chat_requests(
            config,
            requests,
            cache=cache,
            validate=validate,
            on_progress=on_progress,
            counters=counters,
        )
    )


def complete(
    config: EndpointConfig,
    messages: Messages,
    *,
    cache: ResponseCache | None = None,
    validate: Validator | None = None,
) -> str:
    """One completion, for one-off use; raises `ChatCompletionError` when none is acceptable."""
    [result] = complete_many(
        config, [ChatRequest(_ONE_OFF_KEY, messages)], cache=cache, validate=validate
    )
    if result.text is None:
        raise ChatCompletionError(
            f"no acceptable completion from model {config.model!r}: {result.error}"
        )
    return result.text


def _reject_repeated_keys(requests: Sequence[ChatRequest]) -> None:
    repeated = [key for key, count in Counter(r.key for r in requests).items() if count > 1]
    if repeated:
        raise ValueError(
            f"ChatRequest keys must be unique within a batch; repeated: {repeated[:5]}"
            + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
        )


def _cached_result(key: str, cached: CachedResponse) -> ChatResult:
    return ChatResult(
        key=key,
        text=cached.text,
        model=cached.model,
        prompt_tokens=cached.prompt_tokens,
        completion_tokens=cached.completion_tokens,
        latency_s=cached.latency_s,
        attempts=0,
        cached=True,
        error=None,
    )


def _cache_entry(result: ChatResult) -> CachedResponse:
    assert result.text is not None
    return CachedResponse(
        text=result.text,
        model=result.model,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_s=result.latency_s,
    )


class _ProgressReporter:
    def __init__(
        self,
        total: int,
        callback: ProgressCallback | None,
        counters: RequestCounters,
        interval_s: float,
    ) -> None:
        self._total = total
        self._callback = callback
        self._counters = counters
        self._interval_s = interval_s
        self._done = 0
        self._last_report = -math.inf

    def advance(self, count: int) -> None:
        self._done += count
        if self._callback is None or count == 0:
            return
        now = time.monotonic()
        if self._done == self._total or now - self._last_report >= self._interval_s:
            self._last_report = now
            self._callback(self._done, self._total, self._counters)


class _EndpointSession:
    """The connections, limits and retry policy shared by the workers of one batch."""

    def __init__(self, config: EndpointConfig, counters: RequestCounters) -> None:
        self._config = config
        self._counters = counters
        self._api_key = config.api_key.reveal() if config.api_key is not None else None
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=self._api_key or _NO_API_KEY,
            max_retries=0,
            timeout=config.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(transport=_pooled_transport(config)),
        )
        self._limits = RateLimiter(config.requests_per_minute, config.tokens_per_minute)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()

    async def chat(self, request: ChatRequest, validate: Validator | None) -> ChatResult:
        """The request's completion or dead letter, after as many attempts as the policy allows."""
        config = self._config
        body = {"model": config.model, "messages": request.messages, **config.parameters}
        estimate = estimated_tokens(request.messages, config.max_tokens)
        for attempt in range(1, config.max_attempts + 1):
            await self._limits.wait_for_turn(estimate)
            started = time.perf_counter()
            try:
                completion = await self._attempt(body, estimate)
                rejection = validate(completion.text) if validate is not None else None
                if rejection is not None:
                    raise AttemptFailed(
                        f"rejected by the validator: {rejection}", RetryCause.REJECTED
                    )
            except AttemptFailed as failure:
                if failure.cause is None or attempt == config.max_attempts:
                    self._counters.dead_letters += 1
                    plural = "s" if attempt > 1 else ""
                    return ChatResult(
                        key=request.key,
                        text=None,
                        model=config.model,
                        prompt_tokens=0,
                        completion_tokens=0,
                        latency_s=time.perf_counter() - started,
                        attempts=attempt,
                        cached=False,
                        error=self._redacted(
                            f"{failure.reason} (gave up after {attempt} attempt{plural})"
                        ),
                    )
                self._counters.retries[failure.cause] += 1
                await asyncio.sleep(self._retry_delay(attempt, failure.retry_after))
                continue
            return ChatResult(
                key=request.key,
                text=completion.text,
                model=completion.model,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_s=time.perf_counter() - started,
                attempts=attempt,
                cached=False,
                error=None,
            )
        raise AssertionError("unreachable: EndpointConfig requires max_attempts >= 1")

    def _redacted(self, text: str) -> str:
        """`text` without the API key: some servers quote a rejected key in their error message."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            self._limits.pause(retry_after)
            return retry_after
        # Full jitter: spreads out the retries of requests that failed together.
        ceiling = min(self._config.backoff_cap_s, self._config.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)

    async def _attempt(self, body: dict[str, Any], estimate: int) -> Completion:
        self._counters.requests_sent += 1
        usage = (0, 0)
        try:
            response = await self._post(body)
            payload = json_payload(response)
            usage = reported_usage(payload)
            return read_completion(payload, usage, default_model=self._config.model)
        finally:
            self._settle(estimate, *usage)

    async def _post(self, body: dict[str, Any]) -> httpx2.Response:
        try:
            # `post` with a raw response skips the SDK's typed-params transform and model parsing
            # (about 0.3 ms of CPU per request); `read_completion` checks the body's shape instead.
            return await self._client.post("/chat/completions", cast_to=httpx2.Response, body=body)
        except (openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError) as error:
            raise request_failure(error, timeout_s=self._config.timeout_s) from error

    def _settle(self, estimate: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Count the tokens the server reported and correct the token budget's estimate."""
        self._counters.prompt_tokens += prompt_tokens
        self._counters.completion_tokens += completion_tokens
        self._limits.settle(estimate, prompt_tokens + completion_tokens)


def _pooled_transport(config: EndpointConfig) -> httpx2.AsyncHTTPTransport:
    """httpx2's own transport, keeping one connection alive per worker.

    The SDK's default pool keeps only 100 idle connections: above concurrency 100 the others
    would be closed after each response and opened again. Passing a transport also keeps
    HTTP(S)_PROXY out of the way: report text goes straight to the host
    `check_endpoint_allowed` accepted, never through a proxy. TLS is verified against the system's CA store, or SSL_CERT_FILE / SSL_CERT_DIR.
    """
    pool = config.concurrency
    limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
    return httpx2.AsyncHTTPTransport(limits=limits)
