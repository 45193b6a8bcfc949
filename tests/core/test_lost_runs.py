"""Runs the service no longer has, or whose server is gone, end instead of staying ``in_progress`` forever: the
store marks them ``lost`` with the reason, and the error says what happened."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from agent_nb import (
    Agent,
    ConnectionLost,
    ResponsesClient,
    RetryPolicy,
    RunNotFound,
    ServiceUnavailable,
    SQLiteRunStore,
)
from mock_server import MockServer

from ..helpers import ServerProcess, free_port

RETRY = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05, stall_timeout=60.0)
PACED = {"mock_options": "tokens=3000,tps=100,ttft=0,queue_delay=0"}


def agent_for(url: str, path: Path, retry: RetryPolicy = RETRY) -> Agent:
    return Agent(ResponsesClient(url, "sk-test", retry=retry), model="o3", store=SQLiteRunStore(path))


async def test_a_run_deleted_while_it_streams_ends_at_once_with_run_not_found_and_is_marked_lost(
        mock: MockServer, tmp_path: Path) -> None:
    agent = agent_for(mock.url, tmp_path / "runs.sqlite3")
    run = agent.start("Delete me", options={"metadata": PACED})
    wait_for_text = asyncio.get_running_loop().create_future()
    run.add_observer(lambda r, change: wait_for_text.done() or len(r.text) < 50 or wait_for_text.set_result(None))
    await asyncio.wait_for(wait_for_text, 10)
    httpx.delete(f"{mock.url}/responses/{run.response_id}", timeout=10).raise_for_status()
    with pytest.raises(RunNotFound, match=str(run.response_id)):
        await asyncio.wait_for(run.wait(), 10)  # not after the 60 s stall timeout
    stored = agent.store.get(run.run_id)  # type: ignore[union-attr, arg-type]
    assert stored.status == run.status == "lost"
    assert stored.error is not None and stored.error["code"] == "run_not_found"
    assert str(run.response_id) in stored.error["message"]
    assert stored.text and run.text.startswith(stored.text)  # what had arrived is kept
    await agent.client.aclose()


@pytest.mark.parametrize("mode", ["stream", "poll"])
async def test_resuming_a_run_the_service_no_longer_has_marks_it_lost(mock: MockServer, tmp_path: Path,
                                                                      mode: str) -> None:
    agent = agent_for(mock.url, tmp_path / "runs.sqlite3")
    run = agent.start("Forget me", stream=False, launch=False, options={"metadata": PACED})
    await run.create()
    httpx.delete(f"{mock.url}/responses/{run.response_id}", timeout=10).raise_for_status()
    assert agent.store.get(run.run_id).status == "queued"  # type: ignore[union-attr, arg-type]
    again = agent.resume(run.run_id, stream=mode == "stream", poll_interval=0.01)
    with pytest.raises(RunNotFound, match="deleted, or it is past its retention"):
        await again.wait()
    stored = agent.store.get(run.run_id)  # type: ignore[union-attr, arg-type]
    assert (stored.status, stored.error["code"]) == ("lost", "run_not_found")  # type: ignore[index]
    assert [r.run_id for r in agent.store.list(status="lost")] == [run.run_id]  # type: ignore[union-attr]
    await agent.client.aclose()


async def test_a_run_whose_server_is_gone_says_so_and_is_marked_lost(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess("--tokens", "3000", "--tps", "100", "--ttft", "0", port=port).start()
    agent = agent_for(server.url, tmp_path / "runs.sqlite3")
    try:
        run = agent.start("Outlive the server")
        await asyncio.wait_for(_until(lambda: len(run.text) > 50), 10)
    finally:
        server.kill()  # the server and every run on it are gone (no --db)
    with pytest.raises(ConnectionLost) as caught:
        await asyncio.wait_for(run.wait(), 30)
    message = str(caught.value)
    assert f"The server at {server.url} that ran this run is not reachable" in message, message
    assert "retention" not in message
    stored = agent.store.get(run.run_id)  # type: ignore[union-attr, arg-type]
    assert stored.status == "lost" and stored.error is not None and stored.error["code"] == "server_unreachable"
    assert stored.text and run.text.startswith(stored.text)
    await agent.client.aclose()


async def test_a_run_found_again_after_being_marked_lost_goes_on(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "mock.sqlite3"
    server = ServerProcess("--db", str(db), "--tokens", "400", "--tps", "100", "--ttft", "0", port=port).start()
    agent = agent_for(server.url, tmp_path / "runs.sqlite3")
    try:
        run = agent.start("Come back")
        await asyncio.wait_for(_until(lambda: len(run.text) > 50), 10)
        server.kill()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(run.wait(), 30)
        assert agent.store.get(run.run_id).status == "lost"  # type: ignore[union-attr, arg-type]
        server = ServerProcess("--db", str(db), port=port).start()  # the same server, back with its runs
        done = await asyncio.wait_for(agent.resume(run.run_id).wait(), 30)
        assert done.status == "completed"
        assert agent.store.get(run.run_id).status == "completed"  # type: ignore[union-attr, arg-type]
    finally:
        server.stop()
        await agent.client.aclose()


async def test_a_create_that_can_never_connect_says_the_server_is_not_reachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    agent = agent_for(url, tmp_path / "runs.sqlite3")
    for stream in (True, False):
        run = agent.start("Nobody home", stream=stream, launch=False)
        with pytest.raises(ServiceUnavailable, match=f"the server at {url} is not reachable"):
            await (run.updates().__anext__() if stream else run.create())
    await agent.client.aclose()


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.01)

