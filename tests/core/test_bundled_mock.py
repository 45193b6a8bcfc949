"""With nothing configured, the bundled mock server is a service of the machine: its own process, shared by every
process, persisting under ``$AGENT_NB_HOME``. A process that dies does not take its runs with it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent_nb import Agent, ConfigurationError, ConnectionLost, ResponsesClient, RetryPolicy, SQLiteRunStore
from agent_nb._bundled import ensure_bundled, find_bundled, stop_bundled
from agent_nb._config import resolve_endpoint

from ..helpers import ROOT, stop_process, wait_until

#: A process with nothing configured that starts a paced run, prints its run id once text arrives, then streams on.
STARTER = """
import asyncio, sys
from agent_nb import Agent
async def main():
    run = Agent(model="o3").start("Outlive me", launch=False,
                                  options={"metadata": {"mock_options": "tokens=300,tps=100,ttft=0"}})
    announced = False
    async for _ in run.updates():
        if not announced and len(run.text) > 100:
            print(run.run_id, flush=True)
            announced = True
asyncio.run(main())
"""

#: A process with nothing configured that resumes a run by id and prints its outcome as JSON.
RESUMER = """
import asyncio, json, sys
from agent_nb import Agent
async def main():
    run = Agent(model="o3").resume(sys.argv[1])
    first = run.text
    response = await run.wait()
    print(json.dumps({"first": first, "text": response.text, "status": response.status,
                      "response_id": response.response_id}))
asyncio.run(main())
"""


def _server_text(url: str, response_id: str) -> str:
    body = httpx.get(f"{url}/responses/{response_id}", timeout=10).json()
    return "".join(c["text"] for item in body["output"] for c in item["content"])


def test_a_run_started_with_nothing_configured_survives_its_process_being_killed(agent_nb_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
    starter = subprocess.Popen([sys.executable, "-c", STARTER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        run_id = starter.stdout.readline().strip()
        assert run_id.startswith("run_"), starter.stderr.read() if starter.stderr else ""
        with SQLiteRunStore(agent_nb_home / "runs.sqlite3") as store:
            wait_until(lambda: store.get(run_id).text, 10, "a checkpoint with text")
    finally:
        stop_process(starter, signal.SIGKILL)
        for stream in (starter.stdout, starter.stderr):
            if stream is not None:
                stream.close()
    server = find_bundled()
    assert server is not None, "the bundled mock server died with the process that started it"
    assert server.pid != starter.pid
    result = subprocess.run([sys.executable, "-c", RESUMER, run_id], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "completed" and outcome["first"]  # the stored text at once, then the rest
    assert outcome["text"] == _server_text(server.url, outcome["response_id"])
    assert find_bundled() == server, "both processes shared one bundled server"


def test_every_process_shares_one_bundled_server_and_it_keeps_its_port(agent_nb_home: Path) -> None:
    first = ensure_bundled()
    assert resolve_endpoint(environ={}).base_url == first.url
    code = "from agent_nb._bundled import ensure_bundled; print(ensure_bundled().pid)"
    others = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
              for _ in range(3)]
    assert {int(o.stdout) for o in others} == {first.pid}
    assert stop_bundled() == first and find_bundled() is None
    again = ensure_bundled()
    assert again.url == first.url and again.pid != first.pid
    for name in ("mock-server.sqlite3", "mock-server.json", "mock-server.log"):
        assert stat.S_IMODE((agent_nb_home / name).stat().st_mode) == 0o600, name


async def test_runs_on_the_bundled_server_go_on_after_it_is_stopped_and_started_again(agent_nb_home: Path) -> None:
    agent = Agent(ResponsesClient(retry=RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)), model="o3")
    assert agent.client.endpoint.kind == "mock"
    run = agent.start("Across a restart", options={"metadata": {"mock_options": "tokens=300,tps=100,ttft=0"}})
    while len(run.text) < 50:
        await asyncio.sleep(0.01)
    stop_bundled()
    with pytest.raises(ConnectionLost, match="is not reachable"):
        await run.wait()
    assert run.run_id is not None
    record = agent.store.get(run.run_id)  # type: ignore[union-attr]
    assert (record.service, record.status) == ("mock", "lost")
    done = await agent.resume(run.run_id).wait()  # the bundled server starts again, with its database
    server = find_bundled()
    assert server is not None and done.status == "completed"
    assert done.text == _server_text(server.url, done.response_id)  # type: ignore[arg-type]
    await agent.client.aclose()


def test_a_bundled_server_that_cannot_start_says_why(agent_nb_home: Path) -> None:
    (agent_nb_home / "mock-server.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigurationError, match=r"did not start: .*mock-server\.sqlite3 cannot be used"):
        ensure_bundled()
    assert find_bundled() is None
