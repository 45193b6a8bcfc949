"""A process killed mid-run: a new process resumes the run from the store alone, exactly. No key is ever stored."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent_nb import Agent, ResponsesClient, RetryPolicy, SQLiteRunStore
from mock_server import MockServer, ServerConfig

from ..conftest import FAST
from ..helpers import ROOT, wait_until
from .conftest import Backend


def server_text(url: str, response_id: str) -> str:
    body = httpx.get(f"{url}/responses/{response_id}", timeout=10, headers={"Authorization": "Bearer sk-live"}).json()
    return "".join(c["text"] for item in body["output"] for c in item["content"])


async def test_a_new_process_resumes_a_killed_processs_run_from_the_store(backend: Backend) -> None:
    with MockServer(ServerConfig(options=FAST)) as server:
        worker = subprocess.Popen([sys.executable, "-m", "tests.core.resume_worker", server.url, "sk-live",
                                   *backend.args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert worker.stdout is not None
            run_id = worker.stdout.readline().strip()
            assert run_id.startswith("run_")
            store = backend.open()
            wait_until(lambda: (store.get(run_id).sequence_number or 0) > 20, what="a checkpoint")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            if worker.stdout:
                worker.stdout.close()
        stored = store.get(run_id)
        assert not stored.terminal and stored.response_id and stored.text
        client = ResponsesClient(server.url, "sk-live", retry=RetryPolicy(initial_delay=0.01))
        agent = Agent(client, model="o3", store=store)
        run = agent.resume(run_id)
        assert run.text == stored.text  # what was received before the crash is there at once
        first_seq = None
        async for update in run.updates():
            first_seq = first_seq if first_seq is not None else update.sequence_number
        assert first_seq == stored.sequence_number + 1  # type: ignore[operator]
        assert run.status == "completed"
        assert run.text == server_text(server.url, stored.response_id)
        assert store.get(run_id).text == run.text and store.get(run_id).status == "completed"
        await client.aclose()
        store.close()


async def test_the_api_key_never_reaches_the_store(tmp_path: Path) -> None:
    secret = "sk-live-" + os.urandom(8).hex()
    path = tmp_path / "runs.sqlite3"
    with MockServer(ServerConfig(options=FAST, api_key=secret)) as server:
        client = ResponsesClient(server.url, secret)
        store = SQLiteRunStore(path)
        agent = Agent(client, model="o3", store=store)
        await agent.start("Secret?", options={"metadata": {"mock_options": "tokens=30,tps=0,ttft=0"}}).wait()
        run = agent.start("Lost", options={"metadata": {"mock_options": "tokens=30,tps=0,ttft=0",
                                                        "mock_faults": "fail_at=5"}})
        with pytest.raises(Exception, match="failed"):
            await run.wait()
        assert secret not in repr(agent) + repr(client) + repr(run) + str(run.token)
        await client.aclose()
        store.close()
    for file in tmp_path.iterdir():
        assert secret.encode() not in file.read_bytes(), file
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM runs").fetchall()
    assert len(rows) == 2 and secret not in json.dumps(rows)
