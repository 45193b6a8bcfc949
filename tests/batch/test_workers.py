"""Batches across processes: a worker killed with SIGKILL mid-batch is taken over without creating any of its runs
again, and several workers (on SQLite, and on a real Redis) work one batch together, each item created once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_nb import Agent, ResponsesClient, RunStore, SQLiteRunStore
from agent_nb._polling import output_text
from agent_nb.batch import Batch
from mock_server import GenerationOptions, MockServer, ServerConfig

from ..helpers import ROOT, stop_process, wait_until
from .conftest import Backend

PACED = GenerationOptions(tokens=12, tps=30, ttft=0, queue_delay=0)  # each run takes about 0.4 s


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(ServerConfig(options=PACED)) as mock:
        yield mock


def health(server: MockServer) -> dict[str, object]:
    return httpx.get(f"{server.base_url}/mock/health").json()  # type: ignore[no-any-return]


def worker(server: MockServer, backend: Backend, name: str, *extra: str) -> subprocess.Popen[str]:
    where = ["--redis", backend.location, "--prefix", backend.prefix] if backend.kind == "redis" else \
        ["--store", backend.location]
    env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "worker-key"}
    return subprocess.Popen([sys.executable, "-m", "agent_nb", "batch", "worker", *where, "--name", name,
                             "--concurrency", "20", *extra], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, text=True)


def check_outcome(server: MockServer, store: RunStore, name: str, total: int) -> list[str]:
    """Every item ended; completed ones hold the server's text; no response was created twice. Returns the
    response ids of the completed items."""
    batch = Batch.resume(name, store=store, start=False)
    results = batch.results()
    assert len(results) == total and all(r.status in ("completed", "failed") for r in results)
    completed = [r for r in results if r.status == "completed"]
    response_ids = [store.get(str(r.run_id)).response_id for r in completed]
    assert len(set(response_ids)) == len(response_ids)
    for result, response_id in zip(completed[::25], response_ids[::25], strict=True):  # a sample, read back
        body = httpx.get(f"{server.url}/responses/{response_id}").json()
        assert body["status"] == "completed" and output_text(body) == result.text
    assert int(health(server)["creates"]) <= sum(r.attempts for r in results)  # never a second create per attempt
    return [str(r) for r in response_ids]


def test_a_batch_taken_over_after_kill_9_creates_none_of_its_runs_again(server: MockServer, tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    agent = Agent(ResponsesClient(server.url, "k"), store=store)
    Batch.open(agent, [f"row {i}" for i in range(300)], name="rows", start=False)
    backend = Backend("sqlite", str(tmp_path / "runs.sqlite3"))
    proc = worker(server, backend, "rows")
    ledger = store.ledger()
    try:
        wait_until(lambda: ledger.get("rows").counts.get("completed", 0) >= 60, 60,  # type: ignore[union-attr]
                   "60 items completed by the worker")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop_process(proc)
    before = {i.key: i.response_id for i in ledger.items("rows", ["completed"])}
    in_flight = len(ledger.items("rows", ["submitting", "running"]))
    assert before and in_flight > 0  # killed mid-batch, with runs in flight
    creates_at_kill = int(health(server)["creates"])
    batch = Batch.resume("rows", store=store, concurrency=20)  # a new process would do the same: re-attach by name
    batch.wait(120, progress=False)
    assert batch.progress.state == "completed"
    after = {i.key: i.response_id for i in ledger.items("rows", ["completed"])}
    assert all(after[key] == response_id for key, response_id in before.items())  # completed ones are kept
    never_sent = 300 - len(before) - in_flight
    assert int(health(server)["creates"]) - creates_at_kill <= never_sent + 300 - len(after)
    check_outcome(server, store, "rows", 300)


def test_three_workers_one_killed_finish_the_batch_with_each_item_created_once(server: MockServer,
                                                                             backend: Backend) -> None:
    store = backend.open()
    agent = Agent(ResponsesClient(server.url, "k"), store=store)
    Batch.open(agent, [f"document {i}" for i in range(400)], name="docs", start=False)
    workers = [worker(server, backend, "docs", "--lease", "3") for _ in range(3)]
    ledger = store.ledger()
    try:
        wait_until(lambda: ledger.get("docs").counts.get("completed", 0) >= 80, 60,  # type: ignore[union-attr]
                   "80 items completed")
        workers[0].send_signal(signal.SIGKILL)
        for proc in workers[1:]:
            assert proc.wait(120) == 0
    finally:
        for proc in workers:
            stop_process(proc)
    info = ledger.get("docs")
    assert info is not None and info.unfinished == 0 and info.state == "open"
    failed = ledger.items("docs", ["failed"])
    # No failure was injected: the only items that may fail are the killed worker's creates that were on their way
    # when it died, whose fate is unknown (they are never sent again), at most its concurrency of them.
    assert len(failed) <= 20 and all(i.error and i.error["code"] == "unknown_fate" for i in failed), failed
    check_outcome(server, store, "docs", 400)
    assert int(health(server)["creates"]) <= 400  # no item was created twice
    store.close()
