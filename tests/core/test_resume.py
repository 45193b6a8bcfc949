"""Background runs that resume exactly: tokens on every update, breaks anywhere, faults of every kind."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_nb import (
    Agent,
    ConnectionLost,
    ContinuationToken,
    InvalidContinuationToken,
    ResponsesClient,
    RetryPolicy,
    RunExpired,
    RunFailed,
    RunNotFound,
    SQLiteRunStore,
)
from mock_server import MockServer

from ..helpers import ServerProcess, free_port

FAST_RETRY = RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.05, stall_timeout=1.0)


def opts(tokens: int = 20, faults: str = "", pace: str = "tps=0,ttft=0,queue_delay=0", **extra: Any) -> dict[str, Any]:
    metadata = {"mock_options": f"tokens={tokens},{pace}"}
    if faults:
        metadata["mock_faults"] = faults
    return {"background": True, "metadata": metadata, **extra}


@pytest.fixture
async def agent(mock: MockServer, tmp_path: Path) -> AsyncIterator[Agent]:
    client = ResponsesClient(mock.url, "sk-test", retry=FAST_RETRY)
    yield Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    await client.aclose()


def server_text(mock: MockServer, response_id: str) -> str:
    """The text the server holds for a response (past any injected HTTP errors still pending for it)."""
    for _ in range(10):
        answer = httpx.get(f"{mock.url}/responses/{response_id}", timeout=10)
        if answer.status_code == 200:
            break
    body = answer.json()
    return "".join(c["text"] for item in body["output"] for c in item["content"])


async def collect(updates: AsyncIterator[Any]) -> tuple[str, list[Any]]:
    seen = [u async for u in updates]
    return "".join(u.text for u in seen), seen


async def test_every_update_carries_a_token_that_points_at_it(agent: Agent, mock: MockServer) -> None:
    text, updates = await collect(agent.run("Tokens", stream=True, options=opts()))
    assert len(updates) > 20
    for update in updates[:-1]:
        token = update.continuation_token
        assert isinstance(token, ContinuationToken)
        assert token.response_id == updates[0].response_id and token.sequence_number == update.sequence_number
    assert updates[-1].continuation_token is None and updates[-1].status == "completed"
    assert [u.sequence_number for u in updates] == list(range(len(updates)))
    assert text == server_text(mock, updates[0].response_id)


async def test_breaking_at_every_position_and_resuming_is_exact(agent: Agent, mock: MockServer) -> None:
    _, whole = await collect(agent.run("Short", stream=True, options=opts(tokens=5)))
    positions = len(whole)
    for stop in range(positions - 1):
        first = ""
        token = None
        async for update in agent.run("Short", stream=True, options=opts(tokens=5)):
            first += update.text
            token = update.continuation_token
            if update.sequence_number == stop:
                break
        assert token is not None and token.sequence_number == stop
        rest, updates = await collect(agent.run(stream=True, options={"continuation_token": str(token)}))
        assert updates[0].sequence_number == stop + 1
        assert first + rest == server_text(mock, token.response_id), f"break after event {stop}"


async def test_two_hundred_runs_with_random_faults_are_all_exact(mock: MockServer, tmp_path: Path) -> None:
    rng = random.Random(20261123)
    client = ResponsesClient(mock.url, "sk-test", retry=RetryPolicy(max_retries=10, initial_delay=0.005,
                                                                    max_delay=0.05, stall_timeout=2.0))
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    gate = asyncio.Semaphore(25)

    def faults() -> str:
        choices = [
            f"drop_after={rng.randint(1, 30)},drops={rng.randint(1, 4)}",
            f"stall_after={rng.randint(1, 30)},stall=5",
            f"http_429={rng.randint(1, 3)},retry_after=0.01",
            f"http_500={rng.randint(1, 3)}",
            f"http_503={rng.randint(1, 2)},retry_after=0",
            f"split={rng.randint(1, 7)}",
        ]
        picked = rng.sample(choices, rng.randint(1, 3))
        return ",".join(picked)

    async def one(i: int) -> tuple[str, list[int], str]:
        spec = faults()
        tokens = rng.randint(5, 60)
        mode = "multibyte" if i % 3 == 0 else "text"
        async with gate:
            text, updates = await collect(agent.run(f"Run {i}", stream=True,
                                                    options=opts(tokens, spec, pace=f"tps=0,ttft=0,mode={mode}")))
        return text, [u.sequence_number for u in updates], updates[0].response_id

    results = await asyncio.gather(*(one(i) for i in range(200)))
    for text, seqs, response_id in results:
        assert seqs == list(range(len(seqs))), "a duplicated or missing event"
        assert text == server_text(mock, response_id)
    await client.aclose()


async def test_stalled_stream_is_resumed(agent: Agent, mock: MockServer) -> None:
    text, updates = await collect(agent.run("Stall", stream=True, options=opts(faults="stall_after=6,stall=20")))
    assert text == server_text(mock, updates[0].response_id)
    assert [u.sequence_number for u in updates] == list(range(len(updates)))


async def test_retry_budget_spent_raises_connection_lost_with_a_token_that_resumes(agent: Agent,
                                                                                   mock: MockServer) -> None:
    agent.client.retry = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02, stall_timeout=0.5)
    received = ""
    with pytest.raises(ConnectionLost) as caught:
        async for update in agent.run("Budget", stream=True, options=opts(faults="drop_after=6,http_503=3,"
                                                                            "retry_after=0")):
            received += update.text
    lost = caught.value
    assert lost.token is not None and lost.token.sequence_number == 5
    assert lost.text == received and "times in a row" in str(lost)
    rest, _ = await collect(agent.run(stream=True, options={"continuation_token": lost.token}))
    assert received + rest == server_text(mock, lost.token.response_id)


async def test_mock_server_killed_and_restarted_mid_run_completes_exactly(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "mock.sqlite3"
    server = ServerProcess("--db", str(db), port=port).start()
    client = ResponsesClient(server.url, "k", retry=RetryPolicy(max_retries=200, initial_delay=0.02, max_delay=0.1,
                                                                stall_timeout=2))
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    text, seqs, restarted = "", [], False
    try:
        async for update in agent.run("Crash me", stream=True,
                                      options=opts(120, pace="tps=150,ttft=0,queue_delay=0")):
            text += update.text
            seqs.append(update.sequence_number)
            if update.sequence_number == 30 and not restarted:
                server.kill()
                server = ServerProcess("--db", str(db), port=port).start()
                restarted = True
        assert restarted and seqs == list(range(len(seqs)))
        final = httpx.get(f"{server.url}/responses/{seqs and update.response_id}", timeout=10).json()
        assert text == "".join(c["text"] for item in final["output"] for c in item["content"])
    finally:
        server.stop()
        await client.aclose()


async def test_failed_run_raises_run_failed_with_the_service_error(agent: Agent) -> None:
    received = ""
    with pytest.raises(RunFailed) as caught:
        async for update in agent.run("Fail", stream=True, options=opts(faults="fail_at=9")):
            received += update.text
    assert caught.value.code == "server_error" and "event 9" in str(caught.value)
    assert caught.value.response_id is not None and caught.value.response_id in str(caught.value)
    assert caught.value.text == received


async def test_failure_can_be_reported_on_the_response_instead(agent: Agent) -> None:
    response = await agent.run("Fail", options=opts(faults="fail_at=9", raise_on_failure=False))
    while response.continuation_token is not None:
        response = await agent.run(options={"continuation_token": response.continuation_token,
                                            "raise_on_failure": False})
    assert response.status == "failed" and response.error is not None and response.error["code"] == "server_error"
    with pytest.raises(RunFailed):
        await agent.run(options={"continuation_token": ContinuationToken(response.response_id)})  # type: ignore[arg-type]


async def test_cancelled_and_incomplete_are_visible_statuses(agent: Agent) -> None:
    run = agent.start("Cancel me", options=opts(2000, pace="tps=100,ttft=0,queue_delay=0"))
    while run.response_id is None or not run.text:
        await asyncio.sleep(0.01)
    cancelled = await agent.cancel(run.token)
    assert cancelled.status == "cancelled" and cancelled.continuation_token is None
    assert (await run.wait()).status == "cancelled"
    text, updates = await collect(agent.run("Short", stream=True, options=opts(faults="incomplete_at=3")))
    assert updates[-1].status == "incomplete" and len(text.split()) <= 4


async def test_unknown_expired_and_malformed_tokens_raise_named_errors(agent: Agent) -> None:
    with pytest.raises(RunNotFound, match="resp_doesnotexist"):
        await collect(agent.run(stream=True, options={"continuation_token": ContinuationToken("resp_doesnotexist", 3)}))
    response = await agent.run("Expire", options=opts(faults="expire_stream"))
    with pytest.raises(RunExpired, match=str(response.response_id)):  # what the caller has up to 5 is not known
        await collect(agent.run(stream=True, options={"continuation_token": ContinuationToken(
            response.response_id, 5)}))  # type: ignore[arg-type]
    for bad in ("anb1.garbage", "anb1." + "A" * 10, "hello", {"id": 3}, 42):
        with pytest.raises(InvalidContinuationToken):
            await agent.run(options={"continuation_token": bad})


async def test_a_stream_that_can_no_longer_be_resumed_ends_with_the_rest_from_the_response(agent: Agent,
                                                                                          mock: MockServer) -> None:
    response = await agent.run("Expire", options=opts(tokens=30, faults="expire_stream"))
    text, updates = await collect(agent.run(stream=True, options={"continuation_token":
                                                                  response.continuation_token}))
    assert [u.status for u in updates] == ["completed"] and updates[0].continuation_token is None
    assert text == server_text(mock, response.response_id)  # type: ignore[arg-type]


async def test_agent_framework_token_replays_everything_once(agent: Agent, mock: MockServer) -> None:
    response = await agent.run("AF", options=opts())
    text, updates = await collect(agent.run(stream=True, options={"continuation_token":
                                                                  {"response_id": response.response_id}}))
    assert updates[0].sequence_number == 0
    assert text == server_text(mock, response.response_id)  # type: ignore[arg-type]


async def test_a_create_is_never_silently_duplicated(fresh_mock: MockServer, tmp_path: Path) -> None:
    client = ResponsesClient(fresh_mock.url, "k", retry=FAST_RETRY)
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    fresh_mock.set_faults("drop_after=0")
    with pytest.raises(ConnectionLost, match="unknown whether"):
        await collect(agent.run("Once", stream=True, options=opts()))
    assert httpx.get(fresh_mock.base_url + "/mock/health").json()["responses"] == 1
    fresh_mock.set_faults("http_429=2,retry_after=0.01")
    await agent.run("Twice?", options=opts())
    assert httpx.get(fresh_mock.base_url + "/mock/health").json()["responses"] == 2  # 429s retried, one run
    await client.aclose()


async def test_session_follow_up_continues_the_conversation(agent: Agent, mock: MockServer) -> None:
    session = await agent.create_session()
    first = await agent.run("First", session=session, options=opts())
    while first.continuation_token is not None:
        first = await agent.run(session=session, options={"continuation_token": first.continuation_token})
    _, updates = await collect(agent.run("Second", stream=True, session=session, options=opts()))
    body = httpx.get(f"{mock.url}/responses/{updates[0].response_id}", timeout=10).json()
    assert body["previous_response_id"] == first.response_id
    assert session.previous_response_id == updates[0].response_id


@pytest.mark.parametrize("faults", ["http_429=2,retry_after=0.01", "http_500=2", "http_503=3,retry_after=0"])
async def test_a_streamed_create_that_meets_a_transient_error_is_retried_once_for_all(
        fresh_mock: MockServer, tmp_path: Path, faults: str) -> None:
    client = ResponsesClient(fresh_mock.url, "k", retry=FAST_RETRY)
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    fresh_mock.set_faults(faults)
    text, updates = await collect(agent.run("Retry my create", stream=True, options=opts()))
    assert updates[-1].status == "completed" and text == server_text(fresh_mock, updates[0].response_id)
    assert httpx.get(fresh_mock.base_url + "/mock/health").json()["responses"] == 1  # one run, not two
    await client.aclose()


async def test_a_streamed_create_retries_a_refused_connection_until_the_server_is_up(tmp_path: Path) -> None:
    port = free_port()
    client = ResponsesClient(f"http://127.0.0.1:{port}/v1", "k", retry=RetryPolicy(max_retries=50,
                                                                                  initial_delay=0.02, max_delay=0.1))
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run = agent.start("Wait for the server", options=opts())
    refused = asyncio.Event()
    run.add_observer(lambda r, change: change == "reconnecting" and refused.set())
    await asyncio.wait_for(refused.wait(), 10)
    with MockServer(port=port) as server:
        response = await asyncio.wait_for(run.wait(), 20)
        assert response.status == "completed" and response.text == server_text(server, response.response_id)
        assert httpx.get(server.base_url + "/mock/health").json()["responses"] == 1
    await client.aclose()


async def test_a_dropped_non_background_stream_is_connection_lost_at_once(mock: MockServer) -> None:
    client = ResponsesClient(mock.url, "k", retry=RetryPolicy(initial_delay=5.0, max_delay=8.0))
    agent = Agent(client, model="o3", store=False)
    received = ""
    with pytest.raises(ConnectionLost, match="without background=True") as caught:
        async with asyncio.timeout(3):  # a backoff would take 2.5 s or more
            async for update in agent.run("Foreground", stream=True,
                                          options={"metadata": {"mock_options": "tokens=50,tps=0,ttft=0",
                                                                "mock_faults": "drop_after=10"}}):
                received += update.text
    assert caught.value.token is None and caught.value.response_id is None
    await client.aclose()
