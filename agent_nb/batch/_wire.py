"""Lean keep-alive HTTP/1.1 for a batch's many small JSON requests (creates and polls), parsed by ``httptools``.

A batch at full speed sends thousands of tiny requests a second; ``httpx``'s connection pool costs about a
millisecond of CPU per request at a thousand connections, several times what the server spends answering. This
client does only what those requests need: a pool of keep-alive connections (TLS through :mod:`ssl`), one request
at a time on each, ``Content-Length`` and chunked answers, timeouts. Answers go through the same error mapping as
:class:`~agent_nb.ResponsesClient`'s (they are wrapped as ``httpx.Response``), so a batch sees the same errors
either way. :func:`lean_calls` falls back to the ordinary client where this one does not apply (a proxy in the
environment, a token provider, no ``httptools``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._client import ResponsesClient, Retryable, _json_or_raise, _unreachable
from .._errors import ConnectionLost

__all__ = ["LeanCalls", "lean_calls"]

_IDLE = 2.0  # seconds an idle connection is kept; servers close theirs after about 5, and a POST must not race that


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.sent_bytes = False
        self._waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # a reply that is not HTTP: fail the request, drop the connection
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), self._headers, b"".join(self._body)))
        if not self._parser.should_keep_alive():
            self.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes, timeout: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        assert self.transport is not None
        self._headers, self._body = [], []
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        self.sent_bytes = True
        try:
            return await asyncio.wait_for(self._waiter, timeout)
        except BaseException:
            self.close()
            raise


class LeanCalls:
    """``create_once`` and ``retrieve_once`` of :class:`ResponsesClient`, over the lean client (module docstring)."""

    def __init__(self, client: ResponsesClient, max_connections: int) -> None:
        parts = urlsplit(client.base_url)
        self.client = client
        self.retry = client.retry
        self.base_url = client.base_url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._path = parts.path.rstrip("/")
        host = parts.netloc.rpartition("@")[2]
        headers = {"Host": host, "User-Agent": "agent-nb", "Accept": "application/json", **client.endpoint.headers()}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._timeout = client.timeout

    async def create_once(self, body: Mapping[str, Any]) -> dict[str, Any]:
        payload = json.dumps(dict(body), ensure_ascii=False).encode()
        return await self._call("POST", "/responses", payload, None)

    async def retrieve_once(self, response_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/responses/{response_id}", None, response_id)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.popleft().close()

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < _IDLE:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(_Connection, self._host, self._port, ssl=self._ssl),
                self.retry.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _unreachable(self.base_url, httpx.ConnectError(str(exc) or type(exc).__name__)) from exc
        return protocol

    async def _call(self, method: str, path: str, payload: bytes | None, response_id: str | None) -> dict[str, Any]:
        head = f"{method} {self._path}{path} HTTP/1.1\r\n{self._head}"
        if payload is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        data = (head + "\r\n").encode() + (payload or b"")
        async with self._slots:
            connection = await self._connection()
            try:
                status, headers, body = await connection.send(data, self._timeout)
            except Exception as exc:  # a drop, a timeout, a reply that is not HTTP
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if method == "POST":
                    raise ConnectionLost(f"The connection to {self.base_url} failed after the request was sent "
                                         f"({reason}), so it is unknown whether the run started. agent-nb did not "
                                         "retry, to avoid starting it twice.", token=None, cause=exc) from exc
                raise Retryable(reason, error=exc) from exc
            if not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
        response = httpx.Response(status, headers=headers, content=body)
        self.client._observe(response)
        return _json_or_raise(response, response_id)


def lean_calls(client: ResponsesClient, max_connections: int) -> LeanCalls | ResponsesClient:
    """The lean client for ``client``'s endpoint where it applies, else ``client`` itself."""
    proxied = any(os.environ.get(name) for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                                                    "https_proxy", "all_proxy"))
    try:
        import httptools  # noqa: F401
    except ImportError:
        return client
    if proxied or client.endpoint.token_provider is not None or urlsplit(client.base_url).scheme not in ("http",
                                                                                                         "https"):
        return client
    return LeanCalls(client, max_connections)
