"""Runs that learn of their end from a webhook: mock → agent-nb's receiver → run store → a waiting ``run.wait()``,
through every webhook fault, and forged, stale or replayed deliveries refused without a wrong store state."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from agent_nb import Agent, ConfigurationError, ResponsesClient, RetryPolicy, SQLiteRunStore
from agent_nb.webhooks import InvalidWebhook, WebhookReceiver
from mock_server import MockServer, ServerConfig
from mock_server.server import bind
from mock_server.webhooks import sign

from ..conftest import FAST
from ..helpers import wait_until

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
RETRY = RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)
PACED = {"mock_options": "tokens=60,tps=60,ttft=0,queue_delay=0"}


class AppServer:
    """An ASGI app on a free loopback port, in a thread, stopped when the test ends."""

    def __init__(self, app: Any) -> None:
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        wait_until(lambda: self.server.started, what="the receiver to listen")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[MockServer, WebhookReceiver, Agent, list[Any]]]:
    store = SQLiteRunStore(tmp_path / "runs.sqlite3")
    with MockServer(ServerConfig(options=FAST, webhook_secret=SECRET)) as mock:
        receiver = WebhookReceiver(SECRET, store=store, client=ResponsesClient(mock.url, "sk-test", retry=RETRY))
        outcomes: list[Any] = []
        handle = receiver.handle

        async def recording(body: bytes | str, headers: Any) -> Any:
            outcome = await handle(body, headers)
            outcomes.append(outcome)
            return outcome

        receiver.handle = recording  # type: ignore[method-assign]
        with AppServer(receiver.app()) as app:
            httpx.put(f"{mock.base_url}/mock/webhooks", json={"urls": [app.url + "/"]}, timeout=10).raise_for_status()
            agent = Agent(ResponsesClient(mock.url, "sk-test", retry=RETRY), model="o3", store=store)
            yield mock, receiver, agent, outcomes


def service_text(mock: MockServer, response_id: str) -> str:
    body = httpx.get(f"{mock.url}/responses/{response_id}", timeout=10).json()
    return "".join(c["text"] for item in body["output"] if item["type"] == "message" for c in item["content"])


def set_faults(mock: MockServer, faults: str) -> None:
    httpx.put(f"{mock.base_url}/mock/webhooks", json={"faults": faults}, timeout=10).raise_for_status()


async def test_a_run_waiting_for_its_webhook_returns_as_soon_as_it_comes(setup: Any) -> None:
    mock, _, agent, outcomes = setup
    started = time.monotonic()
    run = agent.start("Report", options={"notify": "webhook", "safety_poll": 60, "metadata": PACED})
    response = await asyncio.wait_for(run.wait(), 20)  # far sooner than the 60 s safety poll
    assert time.monotonic() - started < 20
    assert response.status == "completed" and response.text == service_text(mock, response.response_id)
    assert [o.kind for o in outcomes] == ["applied"]
    record = agent.store.get(run.run_id)
    assert (record.status, record.text, record.sequence_number) == ("completed", response.text, None)


@pytest.mark.parametrize("faults", ["delay=0.5", "duplicate", "reorder=0.5"])
async def test_late_duplicated_and_reordered_webhooks_give_every_run_its_right_outcome(setup: Any,
                                                                                       faults: str) -> None:
    mock, _, agent, outcomes = setup
    set_faults(mock, faults)
    runs = [agent.start(f"Report {i}", options={"notify": "webhook", "safety_poll": 60, "metadata": PACED})
            for i in range(3)]
    responses = await asyncio.wait_for(asyncio.gather(*(r.wait() for r in runs)), 30)
    for run, response in zip(runs, responses, strict=True):
        assert response.text == service_text(mock, response.response_id)
        assert agent.store.get(run.run_id).text == response.text
    kinds = sorted(o.kind for o in outcomes)
    assert kinds.count("applied") == 3
    if faults == "duplicate":
        wait_until(lambda: len(outcomes) == 6, what="the duplicates")
        assert sorted(o.kind for o in outcomes).count("duplicate") == 3


@pytest.mark.parametrize("faults", ["drop=1", "bad_signature"])
async def test_a_webhook_that_never_arrives_or_is_forged_leaves_the_safety_poll_to_finish(setup: Any,
                                                                                         faults: str) -> None:
    mock, _, agent, outcomes = setup
    set_faults(mock, faults)
    run = agent.start("Report", options={"notify": "webhook", "safety_poll": 0.5, "metadata": PACED})
    response = await asyncio.wait_for(run.wait(), 20)
    assert response.text == service_text(mock, response.response_id)
    assert agent.store.get(run.run_id).text == response.text  # forged deliveries changed nothing
    assert all(o.kind != "applied" for o in outcomes)
    if faults == "bad_signature":
        log = httpx.get(f"{mock.base_url}/mock/webhooks", timeout=10).json()["deliveries"]
        assert log and log[-1]["outcome"] != 200  # the receiver refused them (400), and the mock retries


async def test_stale_replayed_and_unsigned_deliveries_are_refused(setup: Any) -> None:
    _, receiver, agent, _ = setup
    response = await agent.start("Hi", options={"metadata": PACED}).wait()
    body = json.dumps({"id": "evt_1", "object": "event", "created_at": int(time.time()), "type": "response.completed",
                       "data": {"id": response.response_id}})
    old = int(time.time()) - 3600
    stale = {"webhook-id": "wh_old", "webhook-timestamp": str(old), "webhook-signature": sign(SECRET, "wh_old", old,
                                                                                            body)}
    with pytest.raises(InvalidWebhook, match="too old"):
        await receiver.handle(body, stale)
    with pytest.raises(InvalidWebhook, match="not a valid webhook"):
        await receiver.handle(body, {"webhook-id": "wh_x", "webhook-timestamp": str(int(time.time()))})
    now = int(time.time())
    genuine = {"webhook-id": "wh_new", "webhook-timestamp": str(now), "webhook-signature": sign(SECRET, "wh_new", now,
                                                                                               body)}
    assert (await receiver.handle(body, genuine)).kind == "unchanged"  # the run had finished already
    assert (await receiver.handle(body, genuine)).kind == "duplicate"
    other = body.replace(response.response_id or "", "resp_unknown")
    genuine2 = {**genuine, "webhook-id": "wh_other", "webhook-signature": sign(SECRET, "wh_other", now, other)}
    assert (await receiver.handle(other, genuine2)).kind == "unknown_run"


def test_a_webhook_run_needs_a_store(mock: MockServer) -> None:
    agent = Agent(ResponsesClient(mock.url, "sk-test"), model="o3", store=False)
    with pytest.raises(ConfigurationError, match="needs a background run and a run store"):
        agent.start("Hi", options={"notify": "webhook"}, launch=False)
    with pytest.raises(ConfigurationError, match="notify='sms' is not known"):
        agent.start("Hi", options={"notify": "sms"}, launch=False)
