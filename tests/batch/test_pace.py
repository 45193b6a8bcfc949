"""A batch's pace: a 429 pauses every request for its Retry-After, the service's rate-limit headers spread requests
before any 429, explicit budgets hold, and against the mock's per-key limits a batch finishes with few 429s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent_nb import Agent, ResponsesClient, SQLiteRunStore
from agent_nb.batch import RateLimit
from agent_nb.batch._pacer import Pacer, parse_reset
from mock_server import MockServer, ServerConfig

from ..conftest import FAST
from .test_batch import QUICK_RETRY, creates


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1m30.5s", 90.5),
                                               ("1h2m3s", 3723.0), ("0.5", 0.5), ("", None), ("soon", None)])
def test_reset_durations_are_read_as_the_service_writes_them(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == seconds


async def test_a_429_pauses_every_request_for_its_retry_after_and_narrows_the_window() -> None:
    pacer = Pacer(64)
    pacer.rate_limited_for(0.3)
    resume_at = pacer.paused_until
    assert pacer.allowed_in_flight == 32
    await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert time.monotonic() >= resume_at  # nobody went before the pause ended
    for _ in range(100):
        pacer.succeeded()
    assert 32 < pacer.allowed_in_flight < 40  # about one more run per window's worth of successes
    for _ in range(3000):
        pacer.succeeded()
    assert pacer.allowed_in_flight == 64  # back to concurrency, never past it


async def test_headers_spread_requests_at_the_rate_the_budget_refills() -> None:
    pacer = Pacer(50)
    # 10 requests left of 100, the budget full again in 9 s: 90 come back in 9 s, one every 0.1 s.
    pacer.observe(200, {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "10",
                        "x-ratelimit-reset-requests": "9s"})
    started = time.monotonic()
    for _ in range(4):
        await pacer.acquire()
    assert time.monotonic() - started >= 0.3  # the first goes at once, then one every 0.1 s
    pacer.observe(200, {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "90",
                        "x-ratelimit-reset-requests": "1s"})
    started = time.monotonic()
    for _ in range(20):
        await pacer.acquire()
    assert time.monotonic() - started < 0.2  # plenty left: no spacing


async def test_an_explicit_budget_holds() -> None:
    pacer = Pacer(10, RateLimit(requests_per_minute=600))  # a bucket of 600, refilled at 10 per second
    for _ in range(600):
        await pacer.acquire()
    started = time.monotonic()
    for _ in range(3):
        await pacer.acquire()
    assert time.monotonic() - started >= 0.25  # past the bucket, 10 per second


def test_against_the_services_limits_a_batch_finishes_every_item_with_few_429s(tmp_path: Path) -> None:
    with MockServer(ServerConfig(options=FAST)) as server:
        server.set_rate_limits(requests_per_minute=600)  # 600 at once, then 10 per second
        agent = Agent(ResponsesClient(server.url, "k", retry=QUICK_RETRY), store=SQLiteRunStore(tmp_path / "r.db"))
        batch = agent.batch([f"item {i}" for i in range(650)], name="limited", concurrency=40, mode="stream")
        started = time.monotonic()
        batch.wait(120, progress=False)
        took = time.monotonic() - started
        results = batch.results()
        assert [r.status for r in results] == ["completed"] * 650
        assert creates(server) == 650  # a refused create creates nothing, and nothing was sent twice
        assert took >= 4.0  # the 50 past the budget came back at 10 per second
        assert batch.progress.throttled <= 30  # steered by the headers, it rarely met a 429
