"""Batches end to end against the mock server: every item ends completed (with the server's text) or failed with
its reason, nothing is created twice, re-running adds only new items, and cancelling stops what is unfinished."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_nb import Agent, ConfigurationError, ResponsesClient, RetryPolicy, SQLiteRunStore
from agent_nb._polling import output_text
from agent_nb.batch import Batch, RateLimit
from mock_server import GenerationOptions, MockServer, ServerConfig

from ..conftest import FAST
from ..helpers import wait_until

QUICK_RETRY = RetryPolicy(max_retries=8, initial_delay=0.02, max_delay=0.2)


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(ServerConfig(options=FAST)) as mock:
        yield mock


@pytest.fixture
def agent(server: MockServer, tmp_path: Path) -> Agent:
    return Agent(ResponsesClient(server.url, "test-key", retry=QUICK_RETRY), store=SQLiteRunStore(tmp_path / "r.db"))


def creates(server: MockServer) -> int:
    return int(httpx.get(f"{server.base_url}/mock/health").json()["creates"])


def server_text(server: MockServer, response_id: str) -> str:
    response = httpx.get(f"{server.url}/responses/{response_id}", headers={"Authorization": "Bearer test-key"})
    assert response.status_code == 200, response.text
    return output_text(response.json()) or ""


@pytest.mark.parametrize("mode", ["poll", "stream"])
def test_every_item_ends_with_the_servers_text_or_its_reason_and_nothing_starts_twice(
        server: MockServer, agent: Agent, mode: str) -> None:
    server.set_faults("fail_rate=0.1,http_429_rate=0.05,retry_after=0.05,drop_rate=0.3")
    prompts = [f"Extract the figures of filing {i}" for i in range(150)]
    batch = agent.batch(prompts, name=f"filings-{mode}", concurrency=40, mode=mode, max_attempts=2)
    batch.wait(90, progress=False)
    results = batch.results()
    server.set_faults("")  # the checks below read the server's responses without meeting 429s
    assert len(results) == 150 and batch.progress.state == "completed"
    assert {r.status for r in results} <= {"completed", "failed"}
    failed = [r for r in results if r.status == "failed"]
    assert failed, "with 10% failing responses and two attempts, some items fail both"
    assert all(r.error and "failed" in r.error and r.attempts == 2 for r in failed)
    for result in results:
        record = agent.store.get(result.run_id)  # type: ignore[union-attr,arg-type]
        assert record.labels == {"batch": f"filings-{mode}", "batch_key": result.key}
        if result.status == "completed":
            assert result.text and result.text == server_text(server, str(record.response_id))
            assert record.status == "completed" and record.text == result.text
    assert creates(server) == sum(r.attempts for r in results)  # one create per attempt, none repeated
    assert batch.progress.done == 150 - len(failed) and batch.progress.failed == len(failed)


def test_running_again_with_more_inputs_sends_only_the_new_ones(server: MockServer, agent: Agent) -> None:
    first = agent.batch([("a", "one"), ("b", "two")] + [f"prompt {i}" for i in range(20)], name="grow")
    first.wait(60, progress=False)
    before = {r.key: r.run_id for r in first.results()}
    assert creates(server) == 22
    second = agent.batch([("a", "one"), ("b", "two")] + [f"prompt {i}" for i in range(30)], name="grow")
    second.wait(60, progress=False)
    results = second.results()
    assert creates(server) == 32 and len(results) == 32
    assert all(before[r.key] == r.run_id for r in results if r.key in before)  # finished items are kept as they are
    assert all(r.status == "completed" for r in results)
    with pytest.raises(ConfigurationError, match="different model"):
        agent.batch(["one"], name="grow", options={"model": "o3"})


def test_a_rejected_request_fails_its_item_at_once_and_the_others_go_on(server: MockServer, agent: Agent) -> None:
    items: list[Any] = [f"fine {i}" for i in range(10)]
    items.insert(4, [{"role": "wizard", "content": "Who are you?"}])
    batch = agent.batch(items, name="mixed", concurrency=4, max_attempts=3)
    batch.wait(60, progress=False)
    results = batch.results()
    bad = results[4]
    assert bad.status == "failed" and bad.attempts == 1  # a 400 is not worth a second attempt
    assert bad.error_code == "invalid_value" and "input[0].role" in (bad.error or "")
    assert all(r.status == "completed" for i, r in enumerate(results) if i != 4)
    assert batch.progress.errors and batch.progress.errors[0].startswith(bad.key)


@pytest.mark.parametrize("mode", ["poll", "stream"])
def test_cancel_stops_what_has_not_started_and_cancels_runs_in_flight(tmp_path: Path, mode: str) -> None:
    slow = GenerationOptions(tokens=400, tps=20, ttft=0, queue_delay=0)  # about 20 s a run
    with MockServer(ServerConfig(options=slow)) as server:
        agent = Agent(ResponsesClient(server.url, "k", retry=QUICK_RETRY), store=SQLiteRunStore(tmp_path / "r.db"))
        batch = agent.batch([f"slow {i}" for i in range(30)], name="slow", concurrency=5, mode=mode)
        wait_until(lambda: httpx.get(f"{server.base_url}/mock/health").json()["statuses"].get("in_progress", 0) >= 5,
                   30, "five runs in flight")
        assert batch.cancel() == 25
        batch.wait(60, progress=False)
        results = batch.results()
        assert [r.status for r in results] == ["cancelled"] * 30
        statuses = httpx.get(f"{server.base_url}/mock/health").json()["statuses"]
        assert statuses == {"cancelled": 5}  # the five in flight were cancelled at the service, no other started
        assert batch.progress.state == "cancelled"
        assert all(agent.store.get(r.run_id).status == "cancelled" for r in results[:5])  # type: ignore[union-attr,arg-type]


def test_bad_arguments_are_errors_that_name_the_problem(agent: Agent) -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        agent.batch(["x"], concurrency=0)
    with pytest.raises(ConfigurationError, match="one column"):
        pytest.importorskip("pandas")
        import pandas as pd

        agent.batch(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(ConfigurationError, match="more than one input"):
        agent.batch([("k", "a"), ("k", "b")])
    with pytest.raises(ConfigurationError, match="empty prompt"):
        agent.batch(["fine", "  "])
    with pytest.raises(ConfigurationError, match="'background' is not allowed"):
        agent.batch(["x"], options={"background": False})
    with pytest.raises(ConfigurationError, match="RateLimit"):
        RateLimit(requests_per_minute=-1)
    with pytest.raises(ConfigurationError, match="lives in the run store"):
        Agent(agent.client, store=False).batch(["x"])
    assert Batch.stored(agent.store) == []  # nothing was stored by a refused batch
