"""A store that fails mid-run (a full disk) is reported, never raised: the run's outcome comes from the service,
and neither its text nor its status is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest

from agent_nb import Agent, BackgroundRun, ResponsesClient, RetryPolicy, SQLiteRunStore, StoreError, StoreWarning
from mock_server import MockServer, ServerConfig

from ..conftest import FAST
from ..helpers import ROOT
from ..small_disk import SmallDisk

RETRY = RetryPolicy(max_retries=5, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)


def server_text(url: str, response_id: str) -> str:
    body = httpx.get(f"{url}/responses/{response_id}", timeout=10).json()
    return "".join(c["text"] for item in body["output"] for c in item["content"])


def fill_the_database(store: SQLiteRunStore) -> None:
    """Make every write that needs another page fail with SQLITE_FULL, as on a full disk."""
    with store._connection() as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")


@pytest.mark.parametrize("mode", ["stream", "poll"])
async def test_a_full_store_mid_run_never_turns_a_completed_run_into_an_error(mock: MockServer, tmp_path: Path,
                                                                              mode: str) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    agent = Agent(client, model="o3", store=store)
    run = agent.start("Fill the disk", stream=mode == "stream", poll_interval=0.05, launch=False,
                      options={"metadata": {"mock_options": "tokens=3000,tps=3000,ttft=0,queue_delay=0"}})
    filled: list[bool] = []

    def fill_once(r: BackgroundRun, change: str) -> None:
        if not filled and len(r.text) > 500:
            fill_the_database(store)
            filled.append(True)

    run.add_observer(fill_once)
    with pytest.warns(StoreWarning, match="database or disk is full"):
        response = await run.wait()
    assert filled and response.status == run.status == "completed"
    assert response.text == run.text == server_text(mock.url, run.response_id)  # type: ignore[arg-type]
    assert isinstance(run.store_error, StoreError) and "full" in str(run.store_error)
    stored = store.get(run.run_id)  # type: ignore[arg-type]
    assert not stored.terminal and run.text.startswith(stored.text)  # the last pair that could be written
    with store._connection() as conn:
        conn.execute("PRAGMA max_page_count = 1073741823")  # space again: resuming it from the store finishes it
    again = await agent.resume(run.run_id).wait()
    assert again.text == run.text and store.get(run.run_id).status == "completed"
    await client.aclose()


async def test_a_store_error_is_handed_to_the_runs_handler_once_and_not_warned(mock: MockServer,
                                                                              tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    agent = Agent(client, model="o3", store=store)
    run = agent.start("Quietly", launch=False,
                      options={"metadata": {"mock_options": "tokens=4000,tps=0,ttft=0,queue_delay=0"}})
    assert run.recorder is not None
    heard: list[StoreError] = []
    run.recorder.on_error = heard.append
    fill_the_database(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        response = await run.wait()
    assert response.status == "completed" and len(heard) == 1 and run.store_error is heard[0]
    await client.aclose()


def test_a_disk_that_fills_up_mid_run_keeps_the_run_and_its_text(tmp_path: Path) -> None:
    with MockServer(ServerConfig(options=FAST)) as server, SmallDisk(tmp_path / "small", size_kib=512) as disk:
        store_path = disk.mountpoint / "runs.sqlite3"
        proc = subprocess.Popen(disk.command([sys.executable, "-m", "tests.core.full_disk_worker", server.url,
                                              str(store_path)], cwd=ROOT), cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "streaming"
            assert disk.path("runs.sqlite3").exists()
            disk.fill()
            response_id = httpx.get(f"{server.base_url}/mock/health", timeout=10).json()
            assert response_id["statuses"].get("in_progress") == 1, "the run ended before the disk was full"
            out, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        result = json.loads(out.strip().splitlines()[-1])
    assert result["exception"] is None, result
    assert result["status"] == "completed" and result["text"] == result["server_text"]
    assert result["store_error"] and ("full" in result["store_error"] or "space" in result["store_error"])
    assert result["warnings"] >= 1
