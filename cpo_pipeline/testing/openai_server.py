"""A real OpenAI-compatible chat-completions server on 127.0.0.1, with scripted faults.

It ships in the package, not only in the tests, because three kinds of caller need it: the tests
(429 / 500 / hangs / dropped connections / garbage against the real client), the benchmark
(`benchmarks/bench_llm_client.py` measures the client against it) and users who want to smoke-test
the LLM path of the pipeline without a model:

    with OpenAICompatibleServer(delay_s=0.2) as server:
        os.environ["CPO_LLM_BASE_URL"] = server.base_url
        os.environ["CPO_LLM_MODEL"] = DEFAULT_MODEL
        ...  # materialize in this process, e.g. `dg.materialize(...)`

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) on a bare `asyncio` server in
a background thread, much lighter per request than `http.server`, so at hundreds of requests a
second the client, not the server, is what gets measured.

Token counts in `usage` are whitespace-separated words: deterministic, so tests can assert them.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Self

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DEFAULT_MODEL = "cpo-test-model"
_STARTUP_TIMEOUT_S = 10.0
# 128 clients may open their connections in the same instant; asyncio's default backlog is 100.
_LISTEN_BACKLOG = 1024

Responder = Callable[[list[dict[str, Any]]], str]


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as the server saw it."""

    index: int
    connection: int  # which TCP connection it came on, numbered from 1 as they were accepted
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON body, None when there was none
    repeat: int  # how many earlier chat requests carried exactly the same messages
    received_at: float  # time.monotonic()

    @property
    def prompt(self) -> str:
        """The content of the last message: what a fault plan usually keys on."""
        messages = self.body.get("messages") or [{}]
        return str(messages[-1].get("content", ""))


class FaultKind(StrEnum):
    HTTP_ERROR = "http_error"  # `status` with an OpenAI-style error body (and Retry-After)
    HANG = "hang"  # say nothing for `hang_s`, then drop the connection
    CLOSE_CONNECTION = "close_connection"  # drop the connection without a response
    GARBAGE_BODY = "garbage_body"  # 200 with a body that is not JSON
    EMPTY_CHOICES = "empty_choices"  # 200, valid JSON, `choices: []`
    EMPTY_CONTENT = "empty_content"  # 200, one choice whose content is ""


@dataclass(frozen=True)
class Fault:
    """What the server does instead of answering one chat request."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    message: str | None = None  # the error body's message; default "injected <reason phrase>"
    hang_s: float = 30.0


# Decides, for each chat request, whether it fails and how; None answers normally.
FaultPlan = Callable[[ReceivedRequest], Fault | None]


def echo_responder(messages: list[dict[str, Any]]) -> str:
    """The default answer: the last message's content, prefixed."""
    return f"echo: {messages[-1].get('content', '')}"


def count_tokens(text: str) -> int:
    """The server's token count: whitespace-separated words."""
    return len(text.split())


class OpenAICompatibleServer:
    """`POST /v1/chat/completions` and `GET /v1/models` on 127.0.0.1 (`port` 0: an ephemeral one),
    over TLS when given a server-side `tls` context.

    Every chat request waits `delay_s`, then either meets the fault `faults` plans for it or is
    answered with `responder(messages)`. Every request is recorded (`received`), headers
    included, so tests can check what reached the wire.
    """

    def __init__(
        self,
        *,
        responder: Responder = echo_responder,
        delay_s: float = 0.0,
        faults: FaultPlan | None = None,
        model: str = DEFAULT_MODEL,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._requested_port = port
        self._tls = tls
        self._responder = responder
        self._delay_s = delay_s
        self._faults = faults
        self._model = model
        self._received: list[ReceivedRequest] = []
        self._seen_messages: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._max_in_flight = 0
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._connections_opened = 0
        self._startup_error: BaseException | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not running: use it as a context manager or start()")
        return self._port

    @property
    def base_url(self) -> str:
        """The URL to configure a client with (`CPO_LLM_BASE_URL`)."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    @property
    def chat_requests(self) -> list[ReceivedRequest]:
        return [r for r in self.received if r.path == CHAT_COMPLETIONS_PATH]

    @property
    def connections_opened(self) -> int:
        return self._connections_opened

    @property
    def max_in_flight(self) -> int:
        """The most chat requests the server was working on at one time."""
        return self._max_in_flight

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(ready),), name="openai-test-server", daemon=True
        )
        self._thread.start()
        if not ready.wait(_STARTUP_TIMEOUT_S):
            raise TimeoutError(f"the test server did not start within {_STARTUP_TIMEOUT_S} s")
        if self._startup_error is not None:
            raise RuntimeError("the test server failed to start") from self._startup_error

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(_STARTUP_TIMEOUT_S)
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._track_connection, "127.0.0.1", self._requested_port,
                backlog=_LISTEN_BACKLOG, ssl=self._tls,
            )
        except BaseException as error:
            self._startup_error = error
            ready.set()
            raise
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        await self._stopping.wait()
        server.close()
        # Keep-alive and hanging connections would otherwise outlive the server.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _track_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        with self._lock:
            self._connections_opened += 1
            connection = self._connections_opened
        try:
            await self._serve_connection(connection, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only `stop()` cancels connections; re-raising would make asyncio log each one.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_connection(
        self, connection: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed its keep-alive connection
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            raw_body = await reader.readexactly(length) if length else b""
            reply = await self._reply(connection, method, path, headers, raw_body)
            if reply is None:
                return
            await self._send(writer, reply)
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            if not keep_alive:
                return

    async def _reply(
        self, connection: int, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> _Reply | None:
        """The reply to one request; None drops the connection without one."""
        if method == "GET" and path == MODELS_PATH:
            self._record(connection, method, path, headers, None)
            models = {"object": "list", "data": [{"id": self._model, "object": "model"}]}
            return _json_reply(HTTPStatus.OK, models)
        if method != "POST" or path != CHAT_COMPLETIONS_PATH:
            self._record(connection, method, path, headers, None)
            return _json_reply(HTTPStatus.NOT_FOUND, _error_body(f"no route {method} {path}"))
        try:
            body = json.loads(raw_body)
        except json.JSONDecodeError:
            self._record(connection, method, path, headers, None)
            return _json_reply(HTTPStatus.BAD_REQUEST, _error_body("body is not JSON"))
        request = self._record(connection, method, path, headers, body)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            fault = self._faults(request) if self._faults else None
            if fault is None:
                return _json_reply(HTTPStatus.OK, self._completion(request))
            return await _faulty_reply(fault)
        finally:
            self._in_flight -= 1

    async def _send(self, writer: asyncio.StreamWriter, reply: _Reply) -> None:
        status = reply.status
        head = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            "Content-Type: application/json",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
            f"Content-Length: {len(reply.body)}",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
        await writer.drain()

    def _record(
        self, connection: int, method: str, path: str, headers: dict[str, str], body: Any
    ) -> ReceivedRequest:
        messages_key = json.dumps(body.get("messages"), sort_keys=True) if body else ""
        with self._lock:
            request = ReceivedRequest(
                index=len(self._received),
                connection=connection,
                method=method,
                path=path,
                headers=headers,
                body=body,
                repeat=self._seen_messages[messages_key],
                received_at=time.monotonic(),
            )
            self._seen_messages[messages_key] += 1
            self._received.append(request)
        return request

    def _completion(self, request: ReceivedRequest) -> dict[str, Any]:
        messages = request.body["messages"]
        content = self._responder(messages)
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = count_tokens(content)
        return {
            "id": f"chatcmpl-{request.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model", self._model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


@dataclass(frozen=True)
class _Reply:
    status: HTTPStatus
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(
    status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers or {})


def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


async def _faulty_reply(fault: Fault) -> _Reply | None:
    match fault.kind:
        case FaultKind.HTTP_ERROR:
            status = HTTPStatus(fault.status)
            retry_after = (
                {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            )
            message = fault.message or f"injected {status.phrase}"
            return _json_reply(status, _error_body(message), retry_after)
        case FaultKind.HANG:
            await asyncio.sleep(fault.hang_s)
            return None
        case FaultKind.CLOSE_CONNECTION:
            return None
        case FaultKind.GARBAGE_BODY:
            return _Reply(HTTPStatus.OK, b"<html>502 upstream garbage")
        case FaultKind.EMPTY_CHOICES:
            empty = {"id": "chatcmpl-empty", "object": "chat.completion", "choices": []}
            return _json_reply(HTTPStatus.OK, empty)
        case FaultKind.EMPTY_CONTENT:
            choice = {"index": 0, "message": {"role": "assistant", "content": ""}}
            return _json_reply(HTTPStatus.OK, {"object": "chat.completion", "choices": [choice]})
