"""A lean HTTP/1.1 keep-alive transport for `httpx2.AsyncClient`, used under the OpenAI SDK.

At hundreds of chat completions a second, the CPU the general-purpose connection pool spends per
request limits throughput more than anything else in the client; this keeps only what a
chat-completions endpoint needs (see `KeepAliveTransport`). Measured by
`benchmarks/bench_llm_client.py`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass

import httpx2


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verification context, built once: loading the CA bundle takes ~20 ms."""
    return httpx2.create_ssl_context()



_Origin = tuple[str, str, int]  # scheme, host, port
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        """False once the server has closed it (an idle keep-alive timeout, typically)."""
        return not self.reader.at_eof() and not self.writer.is_closing()


class KeepAliveTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connections on plain asyncio streams, under `httpx2.AsyncClient`.

    httpcore's general-purpose pool (anyio, h11, a scan of every connection on each request)
    costs more CPU per request than the SDK and everything else in this client together, and at
    hundreds of requests a second that CPU is what limits throughput. This keeps what a chat
    completions endpoint needs: keep-alive, TLS, Content-Length, chunked and read-to-close bodies,
    and httpx's timeout and error types, which the SDK turns into `APITimeoutError` and
    `APIConnectionError`. The number of connections is bounded by the callers: each worker has at
    most one request in flight. HTTP(S)_PROXY is not used (httpx ignores it under a custom
    transport): the endpoints report text may go to are loopback or hosts the user runs.
    """

    def __init__(self, tls: ssl.SSLContext) -> None:
        self._tls = tls
        self._idle: dict[_Origin, list[_Connection]] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        connection = self._reuse(origin) or await self._connect(origin, timeouts.get("connect"))
        try:
            body = await request.aread()
            head = b"%s %s HTTP/1.1\r\n%s\r\n" % (
                request.method.encode(),
                url.raw_path,
                b"".join(b"%s: %s\r\n" % pair for pair in request.headers.raw),
            )
            connection.writer.write(head + body)
            async with asyncio.timeout(timeouts.get("write")):
                await connection.writer.drain()
        except TimeoutError as error:
            connection.writer.close()
            raise httpx2.WriteTimeout("sending the request timed out", request=request) from error
        except BaseException:
            connection.writer.close()
            raise
        try:
            async with asyncio.timeout(timeouts.get("read")):
                status, reason, headers, content, reusable = await _read_response(connection.reader)
        except TimeoutError as error:
            connection.writer.close()
            raise httpx2.ReadTimeout("no complete response in time", request=request) from error
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as error:
            # EOFError: asyncio.IncompleteReadError; ValueError: an unreadable status or length.
            connection.writer.close()
            raise httpx2.RemoteProtocolError(
                f"the server broke off or garbled the response: {error!r}", request=request
            ) from error
        except BaseException:
            connection.writer.close()
            raise
        if reusable:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.writer.close()
        return httpx2.Response(
            status,
            headers=headers,
            stream=httpx2.ByteStream(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    def _reuse(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.writer.close()
        return None

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._tls if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as error:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port} timed out") from error
        except OSError as error:
            raise httpx2.ConnectError(f"cannot connect to {host}:{port}: {error}") from error
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.writer.close()
        self._idle.clear()


async def _read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """Status, reason, headers, body, and whether the connection may carry another request."""
    status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n"))[:-4].split(b"\r\n")
    version, status, reason = (status_line.split(b" ", 2) + [b""])[:3]
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(b":") for line in header_lines)
    ]
    fields = {name.lower(): value.lower() for name, value in headers}
    reusable = fields.get(b"connection") != b"close" and (
        version == b"HTTP/1.1" or fields.get(b"connection") == b"keep-alive"
    )
    code = int(status)
    if code < 200 or code in _NO_BODY_STATUSES:
        content = b""
    elif b"chunked" in fields.get(b"transfer-encoding", b""):
        content = await _read_chunked(reader)
    elif b"content-length" in fields:
        content = await reader.readexactly(int(fields[b"content-length"]))
    else:
        content, reusable = await reader.read(), False  # the body ends when the server closes
    return code, reason, headers, content, reusable


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the CRLF after each chunk
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailer fields, unused
    return b"".join(chunks)
