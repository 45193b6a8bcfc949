"""Batches end to end against the mock server: every item ends completed (with the server's text) or failed with
its reason, nothing is created twice, re-running adds only new items, and cancelling stops what is unfinished."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_nb import Agent, ConfigurationError, ResponsesClient, RetryPolicy, SQLiteRunStore
from agent_nb._polling import output_text
from agent_nb.batch import Batch, BatchProgress, RateLimit
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
    faults = "fail_rate=0.05,http_429_rate=0.02,retry_after=0.05,drop_rate=0.2"
    server.set_faults(faults)
    burst: list[int] = []

    def a_burst_of_429s_midway(progress: BatchProgress) -> None:
        if progress.done >= 600 and not burst:
            burst.append(progress.done)
            server.set_faults(faults + ",http_429=80")  # the next 80 requests, whatever they are, meet a 429

    prompts = [f"Extract the figures of filing {i}" for i in range(2000)]
    batch = agent.batch(prompts, name=f"filings-{mode}", concurrency=100, mode=mode, max_attempts=2)
    batch.on_progress(a_burst_of_429s_midway)
    batch.wait(240, progress=False)
    results = batch.results()
    server.set_faults("")  # the checks below read the server's responses without meeting 429s
    assert len(results) == 2000 and batch.progress.state == "completed" and burst
    assert {r.status for r in results} <= {"completed", "failed"}
    failed = [r for r in results if r.status == "failed"]
    retried = [r for r in results if r.status == "completed" and r.attempts == 2]
    assert retried, "with 5% failing responses, some items needed their second attempt"
    assert all(r.error and "failed" in r.error and r.attempts == 2 for r in failed), [
        (r.error, r.attempts) for r in failed if not (r.error and "failed" in r.error and r.attempts == 2)]
    failed_at_server = httpx.get(f"{server.base_url}/mock/health").json()["statuses"].get("failed", 0)
    assert failed_at_server == len(retried) + 2 * len(failed)  # every failed attempt, and only those, was retried
    assert batch.progress.throttled >= 80  # the burst was met, and went by
    for result in results:
        record = agent.store.get(result.run_id)  # type: ignore[union-attr,arg-type]
        assert record.labels == {"batch": f"filings-{mode}", "batch_key": result.key}
        if result.status == "completed":
            assert record.status == "completed" and record.text == result.text and result.text
    for result in [r for r in results if r.status == "completed"][::40]:  # a sample, read back from the server
        record = agent.store.get(str(result.run_id))  # type: ignore[union-attr]
        assert result.text == server_text(server, str(record.response_id))
    assert creates(server) == sum(r.attempts for r in results)  # one create per attempt, none repeated
    assert batch.progress.done == 2000 - len(failed) and batch.progress.failed == len(failed)


def test_an_item_whose_every_attempt_fails_ends_failed_with_the_services_reason(server: MockServer,
                                                                              agent: Agent) -> None:
    server.set_faults("fail_at=2")
    batch = agent.batch([f"doomed {i}" for i in range(12)], name="doomed", concurrency=4, max_attempts=2)
    batch.wait(60, progress=False)
    results = batch.results()
    assert [r.status for r in results] == ["failed"] * 12 and all(r.attempts == 2 for r in results)
    assert all(r.error and "failed" in r.error and r.error_code for r in results), [r.error for r in results]
    assert creates(server) == 24 and batch.progress.failed == 12 and batch.progress.state == "completed"


def test_a_reattach_by_name_works_the_batch_at_the_pace_it_was_started_with(agent: Agent) -> None:
    Batch.open(agent, ["one", "two"], name="paced", concurrency=3, rate_limit=RateLimit(600), start=False)
    again = Batch.resume("paced", agent=agent, start=False)
    assert again.concurrency == 3 and again.rate_limit == RateLimit(requests_per_minute=600)
    faster = Batch.resume("paced", agent=agent, concurrency=50, rate_limit=RateLimit(tokens_per_minute=9000),
                          start=False)
    assert faster.concurrency == 50 and faster.rate_limit == RateLimit(tokens_per_minute=9000)
    assert Batch.resume("paced", agent=agent, start=False).concurrency == 3  # what a re-attach gives stays the first


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
    with pytest.raises(ConfigurationError, match="already exists with another model"):
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


def test_items_with_function_tools_are_full_agent_runs(server: MockServer, tmp_path: Path) -> None:
    from agent_nb import tool

    calls: list[str] = []

    @tool(description="The latest price of a stock.")
    def get_price(ticker: str) -> dict[str, Any]:
        calls.append(ticker)
        return {"ticker": ticker, "price": 412.3}

    steps = [{"call": "get_price", "arguments": {"ticker": "MSFT"}}, {"answer": "Price: {output}"}]
    options = {"metadata": {"mock_options": "tokens=12,tps=0,ttft=0,queue_delay=0,tool_time=0",
                            "mock_agent": __import__("json").dumps(steps)}}
    agent = Agent(ResponsesClient(server.url, "k", retry=QUICK_RETRY), store=SQLiteRunStore(tmp_path / "r.db"),
                  tools=[get_price])
    batch = agent.batch([f"Price {i}?" for i in range(6)], name="prices", options=options, concurrency=3)
    batch.wait(60, progress=False)
    results = batch.results()
    assert [r.status for r in results] == ["completed"] * 6 and len(calls) == 6  # each call run exactly once
    assert all(r.text == 'Price: {"ticker": "MSFT", "price": 412.3}' for r in results)
    record = agent.store.get(str(results[0].run_id))  # type: ignore[union-attr]
    assert record.chain is not None and record.chain["legs"] != [record.response_id]  # one run, two responses
    with pytest.raises(ConfigurationError, match="get_price"):
        Batch.resume("prices", store=agent.store)  # an agent without the tool cannot carry it on


def test_a_store_that_fails_for_a_while_loses_nothing_and_keys_never_reach_it(server: MockServer, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    from agent_nb import StoreError, StoreWarning
    from agent_nb._store._sqlite_ledger import SQLiteLedger

    store = SQLiteRunStore(tmp_path / "r.db")
    agent = Agent(ResponsesClient(server.url, "sk-very-secret-key", retry=QUICK_RETRY), store=store)
    real_write = SQLiteLedger.write
    failures = [8]

    def flaky(self: SQLiteLedger, *args: Any, **kwargs: Any) -> int:
        if failures[0] > 0:
            failures[0] -= 1
            raise StoreError("database or disk is full")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteLedger, "write", flaky)
    with pytest.warns(StoreWarning, match="disk is full"):
        batch = agent.batch([f"note {i}" for i in range(40)], name="flaky", concurrency=10)
        batch.wait(60, progress=False)
    assert failures == [0]
    results = batch.results()
    assert [r.status for r in results] == ["completed"] * 40 and all(r.text for r in results)
    assert creates(server) == 40
    store.close()
    for path in tmp_path.iterdir():
        assert b"sk-very-secret-key" not in path.read_bytes()


async def test_retry_failed_await_and_a_stop_then_re_attach_in_the_same_process(server: MockServer,
                                                                                 agent: Agent) -> None:
    server.set_faults("fail_rate=0.3")
    batch = agent.batch([f"claim {i}" for i in range(40)], name="claims", max_attempts=1)
    assert await batch is batch
    failed = [r.key for r in batch.results() if r.status == "failed"]
    assert failed and batch.progress.failed == len(failed)
    server.set_faults("")
    sent = creates(server)
    assert batch.retry_failed() == len(failed)
    await batch
    assert [r.status for r in batch.results()] == ["completed"] * 40
    assert creates(server) == sent + len(failed)  # only the failed ones were sent again
    slow = GenerationOptions(tokens=200, tps=100, ttft=0, queue_delay=0)
    server.set_faults("")
    paced = {"metadata": {"mock_options": f"tokens={slow.tokens},tps={slow.tps}"}}
    more = agent.batch([f"memo {i}" for i in range(30)], name="memos", concurrency=10, options=paced)
    await asyncio.to_thread(wait_until, lambda: more.progress.done >= 5, 30, "five memos done")
    more.stop()  # as a kernel restart would: the runs in flight go on at the service
    assert not more.working and more.progress.state == "stopped"
    again = agent.batch([f"memo {i}" for i in range(30)], name="memos", concurrency=10, options=paced)
    await again
    results = again.results()
    assert [r.status for r in results] == ["completed"] * 30 and all(r.attempts == 1 for r in results)
    assert creates(server) == sent + len(failed) + 30  # re-attached: nothing was created twice
