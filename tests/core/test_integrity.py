"""The run store's invariant holds at every moment, whatever path writes it: an unfinished run's ``text`` and
``items`` are exactly the output of events ``0..sequence_number``, and a finished run's are the service's.

A long run is broken and resumed at many points, by this process, by a fresh agent and store, by other processes
(some killed with ``kill -9`` mid-stream), and from stale tokens; a watcher thread reads the store the whole time,
and the record is checked after every step, while the run is still going.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_nb import Agent, ContinuationToken, ResponsesClient, RetryPolicy, RunRecord, SQLiteRunStore
from agent_nb._items import OutputItems
from mock_server import MockServer, ServerConfig

from ..conftest import FAST
from ..helpers import run_worker

pytestmark = pytest.mark.timeout(180)

RETRY = RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)
PACED = {"mock_options": "tokens=2500,tps=100,ttft=0,queue_delay=0,tool_time=0.05"}
#: An agent run: a reasoning summary, searches and a code cell, then a long cited answer.
AGENT_RUN = {"background": True, "metadata": PACED, "reasoning": {"summary": "auto"},
             "tools": [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]}
State = tuple[str, "int | None", str, "list[dict[str, Any]] | None"]


class Events:
    """The server's events of one response, from a full replay, to say what any stored pair should be."""

    def __init__(self, url: str, response_id: str) -> None:
        self.texts: dict[int, str] = {}
        self.items: dict[int, list[dict[str, Any]]] = {}
        self.final: str | None = None
        folder = OutputItems()
        text = ""
        with httpx.Client(timeout=30) as http, http.stream("GET", f"{url}/responses/{response_id}",
                                                           params={"stream": "true"}) as stream:
            import json

            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "response.output_text.delta":
                    text += event["delta"]
                else:
                    folder.apply(event, len(text))
                self.texts[event["sequence_number"]] = text
                self.items[event["sequence_number"]] = folder.stored()
        self.final = text if self.texts else None

    def check(self, status: str, sequence_number: int | None, text: str, items: list[dict[str, Any]] | None,
              *, final: str | None = None) -> None:
        if status in ("completed", "failed", "cancelled", "incomplete"):
            assert text == (final if final is not None else self.final), f"finished with the wrong text ({status})"
        elif sequence_number is None:
            assert text == "", f"no event recorded, yet {len(text)} characters of text"
            assert not items, f"no event recorded, yet {len(items or [])} items"
        else:
            expected = self.texts[sequence_number]
            assert text == expected, (f"seq {sequence_number}: {len(text)} characters stored where events "
                                      f"0..{sequence_number} carry {len(expected)}")
            assert items == self.items[sequence_number], (
                f"seq {sequence_number}: the stored items are not those events 0..{sequence_number} built")


class Watcher(threading.Thread):
    """Reads one run's record over and over from its own store connection, keeping every distinct state seen."""

    def __init__(self, path: Path, run_id: str) -> None:
        super().__init__(daemon=True)
        self.store = SQLiteRunStore(path)
        self.run_id = run_id
        self.seen: list[State] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            record = self.store.get(self.run_id)
            state = (record.status, record.sequence_number, record.text, record.items)
            if not self.seen or self.seen[-1] != state:
                self.seen.append(state)
            self.stopping.wait(0.002)

    def stop(self) -> list[State]:
        self.stopping.set()
        self.join(10)
        self.store.close()
        return self.seen


async def take(updates: AsyncIterator[Any], count: int) -> ContinuationToken:
    """Read ``count`` updates, then break out as a user would; the token of the last one."""
    token = None
    seen = 0
    async for update in updates:
        token = update.continuation_token
        seen += 1
        if seen >= count:
            break
    assert token is not None, "the run ended during the test: pace it slower"
    return token


def hop_in_another_process(url: str, path: Path, token: ContinuationToken, count: int, *, kill_after: int | None
                           ) -> ContinuationToken:
    """Resume in a new process; with ``kill_after``, SIGKILL it after that many updates. Its last printed token."""
    lines, code = run_worker("tests.core.hop_worker", url, "sk-test", str(path), str(token),
                             str(count if kill_after is None else 10**6), kill_after=kill_after, timeout=30)
    assert kill_after is not None or code == 0
    return ContinuationToken.parse(lines[-1]) if lines else token


def server_status(url: str, response_id: str) -> str:
    return str(httpx.get(f"{url}/responses/{response_id}", timeout=10).json()["status"])


async def test_breaking_and_resuming_anywhere_by_anyone_keeps_the_store_exact(tmp_path: Path) -> None:
    rng = random.Random(20261202)
    path = tmp_path / "runs.sqlite3"
    with MockServer(ServerConfig(options=FAST)) as server:
        client = ResponsesClient(server.url, "sk-test", retry=RETRY)
        agent = Agent(client, model="o3", store=SQLiteRunStore(path))
        token = await take(agent.run("A long report", stream=True, options=AGENT_RUN), rng.randint(3, 30))
        response_id = token.response_id
        record = agent.store.find(response_id)  # type: ignore[union-attr]
        assert record is not None
        watcher = Watcher(path, record.run_id)
        watcher.start()
        checks: list[State] = []
        tokens = [token]
        kinds = ["same", "fresh", "process", "kill", "stale"] * 4
        rng.shuffle(kinds)
        for kind in kinds:
            count = rng.randint(5, 60)
            if kind == "same":
                token = await take(agent.run(stream=True, options={"continuation_token": token}), count)
            elif kind == "fresh":  # a new agent and store, as a restarted kernel has
                other = Agent(ResponsesClient(server.url, "sk-test", retry=RETRY), model="o3",
                              store=SQLiteRunStore(path))
                token = await take(other.run(stream=True, options={"continuation_token": str(token)}), count)
                await other.client.aclose()
            elif kind == "process":
                token = hop_in_another_process(server.url, path, token, count, kill_after=None)
            elif kind == "kill":
                token = hop_in_another_process(server.url, path, token, count, kill_after=rng.randint(1, count))
            else:  # the token another process printed before it went on: the store is ahead of it
                token = await take(agent.run(stream=True, options={"continuation_token": tokens[-2]}), count)
            tokens.append(token)
            stored = agent.store.get(record.run_id)  # type: ignore[union-attr]
            checks.append((stored.status, stored.sequence_number, stored.text, stored.items))
            assert server_status(server.url, response_id) == "in_progress", "the run ended during the test"
        httpx.post(f"{server.url}/responses/{response_id}/cancel", timeout=10).raise_for_status()
        final = await agent.resume(record.run_id).wait()
        seen = watcher.stop()
        events = Events(server.url, response_id)
        for status, seq, text, items in checks + seen:
            events.check(status, seq, text, items)
        done: RunRecord = agent.store.get(record.run_id)  # type: ignore[union-attr]
        assert (done.status, final.status) == ("cancelled", "cancelled")
        assert done.text == final.text == events.final
        # The run's items are the service's own, whole, and kinds beyond text were among them.
        service_output = httpx.get(f"{server.url}/responses/{response_id}", timeout=10).json()["output"]
        assert done.output == final.items == service_output
        assert {"reasoning", "web_search_call", "code_interpreter_call", "message"} <= {i["type"] for i in done.output}
        assert len(checks) == 20 and len(seen) >= 10 and max(s[1] or 0 for s in seen) > 100
        await client.aclose()


async def test_a_token_resumed_where_the_store_knows_nothing_replays_the_text_before_it(mock: MockServer,
                                                                                         tmp_path: Path) -> None:
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    first = Agent(client, model="o3", store=False)
    text = ""
    token = None
    async for update in first.run("Elsewhere", stream=True, options={"background": True, "metadata": {
            "mock_options": "tokens=80,tps=0,ttft=0,queue_delay=0"}}):
        text += update.text
        token = update.continuation_token
        if update.sequence_number == 40:
            break
    assert token is not None
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    run = agent.resume(str(token))
    rest = "".join([u.text async for u in run.updates()])
    events = Events(mock.url, token.response_id)
    assert text + rest == events.final == run.text  # the run's text is the whole text, not just the tail
    stored = agent.store.get(run.run_id)  # type: ignore[union-attr, arg-type]
    assert (stored.status, stored.text) == ("completed", events.final)
    await client.aclose()


async def test_stored_finished_runs_come_back_finished_without_asking_the_service(mock: MockServer,
                                                                                 tmp_path: Path) -> None:
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    done = await agent.start("Finish", options={"metadata": {"mock_options": "tokens=10,tps=0,ttft=0"}}).wait()
    assert done.run_id is not None
    httpx.delete(f"{mock.url}/responses/{done.response_id}", timeout=10).raise_for_status()  # gone on the service
    again = agent.resume(done.run_id)
    assert (await asyncio.wait_for(again.wait(), 5)).text == done.text and again.status == "completed"
    await client.aclose()
