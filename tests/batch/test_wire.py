"""The batch's lean HTTP client: keep-alive reuse, chunked and Content-Length answers, the same errors as the
ordinary client (a 404 is RunNotFound, a 429 is retryable with its Retry-After), and the create rule: a connection
dropped after a create was sent is an unknown fate, never a retry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from agent_nb import ConnectionLost, ResponsesClient, RunNotFound
from agent_nb._client import Retryable
from agent_nb.batch._wire import LeanCalls, lean_calls

from ..helpers import free_port

Reply = Callable[[bytes], bytes | None]  # the raw request -> the raw answer, or None to drop the connection


def answer(status: int, body: object, *, chunked: bool = False, close: bool = False, headers: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}"
    if close:
        head += "Connection: close\r\n"
    if chunked:
        parts = [data[:5], data[5:]]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + payload
    return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, list[Reply], list[int]]]:
    """A server answering each request with the next of ``replies``; ``connections`` counts connections."""
    replies: list[Reply] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                body = await reader.readexactly(length) if length else b""
                out = replies.pop(0)(head + body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", replies, connections
    finally:
        server.close()
        await server.wait_closed()


async def test_answers_of_both_framings_on_one_kept_alive_connection(raw_server: tuple[str, list[Reply], list[int]]
                                                                     ) -> None:
    url, replies, connections = raw_server
    seen: list[bytes] = []
    replies += [lambda raw: (seen.append(raw), answer(200, {"id": "resp_1", "status": "queued"}))[1],
                lambda raw: (seen.append(raw), answer(200, {"id": "resp_1", "status": "completed"}, chunked=True))[1]]
    client = ResponsesClient(url, "sk-secret")
    heard: list[int] = []
    client.on_answer = lambda status, headers: heard.append(status)
    calls = lean_calls(client, 4)
    assert isinstance(calls, LeanCalls)
    assert (await calls.create_once({"model": "m", "input": "ünïcode"}))["status"] == "queued"
    assert (await calls.retrieve_once("resp_1"))["status"] == "completed"
    assert len(connections) == 1 and heard == [200, 200]
    post, get = seen
    assert post.startswith(b"POST /v1/responses HTTP/1.1\r\n") and b"Authorization: Bearer sk-secret" in post
    assert json.loads(post.split(b"\r\n\r\n", 1)[1]) == {"model": "m", "input": "ünïcode"}
    assert get.startswith(b"GET /v1/responses/resp_1 HTTP/1.1\r\n")
    await calls.aclose()


async def test_errors_map_as_the_ordinary_clients_do(raw_server: tuple[str, list[Reply], list[int]]) -> None:
    url, replies, _ = raw_server
    replies += [lambda raw: answer(404, {"error": {"message": "No response found", "code": None}}),
                lambda raw: answer(429, {"error": {"message": "slow down"}}, headers="Retry-After: 2\r\n", close=True),
                lambda raw: None,  # a GET whose connection drops: worth a retry
                lambda raw: None]  # a create whose connection drops after it was sent: its fate is unknown
    calls = LeanCalls(ResponsesClient(url, "k"), 4)
    with pytest.raises(RunNotFound):
        await calls.retrieve_once("resp_gone")
    with pytest.raises(Retryable) as limited:
        await calls.retrieve_once("resp_1")
    assert limited.value.retry_after == 2.0
    with pytest.raises(Retryable):
        await calls.retrieve_once("resp_1")
    with pytest.raises(ConnectionLost) as lost:
        await calls.create_once({"model": "m", "input": "x"})
    assert lost.value.token is None and "unknown whether the run started" in str(lost.value)
    await calls.aclose()


async def test_a_server_that_is_not_there_is_retryable_and_unreachable() -> None:
    calls = LeanCalls(ResponsesClient(f"http://127.0.0.1:{free_port()}/v1", "k"), 4)
    with pytest.raises(Retryable) as refused:
        await calls.create_once({"model": "m", "input": "x"})
    assert refused.value.unreachable and refused.value.repeatable  # never sent: safe to send again


def test_a_proxy_or_a_token_provider_keeps_the_ordinary_client(monkeypatch: pytest.MonkeyPatch) -> None:
    client = ResponsesClient("http://127.0.0.1:9/v1", "k")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert lean_calls(client, 4) is client
    monkeypatch.delenv("HTTPS_PROXY")
    provided = ResponsesClient("http://127.0.0.1:9/v1", lambda: "token")
    assert lean_calls(provided, 4) is provided
