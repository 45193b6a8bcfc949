"""Batch benchmark: agent-nb's batch engine against the mock server's own create+retrieve capacity.

Run ``.venv/bin/python bench/bench_batch.py`` (``--items 10000 --concurrency 1000`` by default; ``--quick`` for a
smoke run). The mock server runs in its own process, as users start it (``python -m mock_server``), with instant
replies, so that what is measured is the client side and the server's capacity, not generation.

* **Peer (capacity):** a bare loop on the same ``httpx`` client library, at the same concurrency: each slot creates
  a background response and retrieves it until it has ended, back to back, with no store and no pacing. Its
  items/s is what the mock can serve to an ideal client on this machine.
* **agent-nb:** ``agent.batch(items, concurrency=C)`` in poll mode with the SQLite run store (every item recorded
  as a run, and in the ledger), to the end. Reported as items/s, as a ratio of the peer's (goal >= 0.7), and the
  client's CPU seconds per item (the whole process: the engine's thread, httpx, SQLite).
* **Memory per in-flight item:** with slow replies, C runs in flight: traced Python memory of the batch engine,
  per run, against the same C runs each followed by its own ``BackgroundRun`` (one task per run, the path a single
  ``%%agent`` cell takes).
* **Re-attach:** ``agent.batch(items, name=same)`` on the finished batch of ``--items`` items, until its first
  progress report; and, as after a kernel restart, ``Batch.resume(name)`` on a batch of ``--items`` items stopped
  with C slow runs in flight, until every one of them is followed again: seconds, against the 2 s goal.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))

from agent_nb import Agent, ResponsesClient, SQLiteRunStore  # noqa: E402
from agent_nb.batch import Batch  # noqa: E402
from agent_nb.batch._wire import LeanCalls  # noqa: E402


def start_mock(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m mock_server --port 0`` with ``flags``; returns the process and its /v1 URL."""
    state = Path(tempfile.mkdtemp()) / "mock.json"
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--port", "0", "--state-file", str(state), *flags],
                            cwd=HERE.parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the mock server exited: {proc.stderr.read() if proc.stderr else ''}")
        if state.exists():
            import json

            with open(state) as f:
                data = json.load(f)
            return proc, str(data["url"])
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the mock server did not start within 30 s")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def peer(url: str, items: int, concurrency: int, *, lean: bool) -> tuple[float, float]:
    """Items/s of a bare create-then-retrieve loop at ``concurrency``, and the client's CPU seconds per item: over
    agent-nb's lean HTTP client (``lean``), or over one ``httpx.AsyncClient``."""
    limits = httpx.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency + 16)
    http = httpx.AsyncClient(base_url=url + "/", limits=limits, timeout=60)
    calls = LeanCalls(ResponsesClient(url, "bench-key"), concurrency + 16)
    queue = list(range(items))

    async def create(body: dict[str, Any]) -> dict[str, Any]:
        return await calls.create_once(body) if lean else (await http.post("responses", json=body)).json()

    async def retrieve(response_id: str) -> dict[str, Any]:
        return await calls.retrieve_once(response_id) if lean else (await http.get(f"responses/{response_id}")).json()

    async def slot() -> None:
        while queue:
            number = queue.pop()
            body = {"model": "mock-model", "input": f"Item {number}", "background": True, "store": True}
            response = await create(body)
            while response["status"] not in ("completed", "failed", "cancelled", "incomplete"):
                response = await retrieve(response["id"])

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(concurrency)))
    speed, used = items / (time.perf_counter() - started), (time.process_time() - cpu) / items
    await http.aclose()
    await calls.aclose()
    return speed, used


def agent_for(url: str, home: Path) -> Agent:
    return Agent(ResponsesClient(url, "bench-key"), model="mock-model", store=SQLiteRunStore(home / "runs.sqlite3"))


def batch_speed(url: str, items: int, concurrency: int, home: Path) -> tuple[float, float, list[str]]:
    agent = agent_for(url, home)
    inputs = [f"Item {number}" for number in range(items)]
    cpu, started = time.process_time(), time.perf_counter()
    batch = agent.batch(inputs, name="bench", concurrency=concurrency)
    batch.wait(600, progress=False)
    elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    progress = batch.progress
    if progress.done != items:
        raise SystemExit(f"the batch did not complete every item: {progress.summary()}")
    return items / elapsed, used / items, inputs


def reattach_time(url: str, inputs: list[str], home: Path) -> float:
    agent = agent_for(url, home)
    heard = threading.Event()
    started = time.perf_counter()
    batch = agent.batch(inputs, name="bench")
    batch.on_progress(lambda progress: heard.set())
    heard.wait(60)
    took = time.perf_counter() - started
    batch.stop()
    return took


def reattach_in_flight_time(url: str, items: int, concurrency: int, home: Path) -> float:
    """Seconds from ``Batch.resume`` to following again every run of a stopped batch that was in flight."""
    first = agent_for(url, home)
    batch = first.batch([f"Long {n}" for n in range(items)], name="restarted", concurrency=concurrency)
    deadline = time.monotonic() + 120
    while batch.progress.running < concurrency:
        if time.monotonic() > deadline:
            raise SystemExit(f"runs did not all get in flight: {batch.progress.summary()}")
        time.sleep(0.2)
    batch.stop()  # as a kernel restart would: the runs go on at the service
    again_agent = agent_for(url, home)  # a new process's view: its own store connection
    started = time.perf_counter()
    again = Batch.resume("restarted", agent=again_agent)
    engine = again._engine
    while engine is None or len(engine.flights) < concurrency or again.progress.running < concurrency:
        if time.perf_counter() - started > 120:
            raise SystemExit(f"the re-attached batch did not follow its runs: {again.progress.summary()}")
        time.sleep(0.005)
        engine = again._engine
    took = time.perf_counter() - started
    again.cancel()
    again.wait(120, progress=False)
    return took


def memory_per_flight(url: str, concurrency: int, home: Path) -> tuple[float, float]:
    """Traced bytes per in-flight run: the batch engine, and one BackgroundRun task per run."""
    agent = agent_for(url, home)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    batch = agent.batch([f"Slow {n}" for n in range(concurrency)], name="memory", concurrency=concurrency)
    deadline = time.monotonic() + 120
    while batch.progress.running + batch.progress.done < concurrency or batch.progress.waiting:
        if time.monotonic() > deadline:
            raise SystemExit(f"runs did not all get in flight: {batch.progress.summary()}")
        time.sleep(0.2)
    time.sleep(1.0)  # let every run have its first poll
    engine = tracemalloc.get_traced_memory()[0] - base
    batch.cancel()
    batch.wait(120, progress=False)
    tracemalloc.stop()

    async def single_runs() -> int:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        runs = [agent.start(f"Slow single {n}", stream=False, poll_interval=2.0) for n in range(concurrency)]
        while sum(run.response_id is not None for run in runs) < concurrency:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        used: int = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        await asyncio.gather(*(run.cancel() for run in runs), return_exceptions=True)
        return used

    singles = asyncio.run(single_runs())
    return engine / concurrency, singles / concurrency


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="1,000 items at concurrency 200 (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.concurrency = 1000, 200
    instant = ("--tokens", "8", "--tps", "0", "--ttft", "0", "--queue-delay", "0")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["AGENT_NB_HOME"] = str(home)
        proc, url = start_mock(*instant)
        try:
            capacity, peer_cpu = asyncio.run(peer(url, args.items, args.concurrency, lean=True))
        finally:
            stop(proc)
        proc, url = start_mock(*instant)
        try:
            httpx_speed, httpx_cpu = asyncio.run(peer(url, min(args.items, 3000), args.concurrency, lean=False))
        finally:
            stop(proc)
        proc, url = start_mock(*instant)  # a fresh server: the peer's responses do not weigh on the batch's
        try:
            speed, cpu, inputs = batch_speed(url, args.items, args.concurrency, home)
            reattach = reattach_time(url, inputs, home)
        finally:
            stop(proc)
        proc, url = start_mock("--tokens", "2000", "--tps", "20", "--ttft", "0", "--queue-delay", "0")
        try:
            engine, singles = memory_per_flight(url, min(args.concurrency, 500), home)
            in_flight = reattach_in_flight_time(url, args.items, args.concurrency, home)
        finally:
            stop(proc)
    print(f"batch of {args.items:,} items, concurrency {args.concurrency:,}, instant replies, 2 cores shared with "
          "the mock server")
    print(f"  mock capacity (bare create+retrieve loop, no store): {capacity:,.0f} items/s, client CPU "
          f"{peer_cpu * 1e3:.2f} ms/item")
    print(f"  the same loop over one httpx.AsyncClient: {httpx_speed:,.0f} items/s, client CPU {httpx_cpu * 1e3:.2f} "
          f"ms/item ({httpx_speed / capacity:.2f}x)")
    print(f"  agent-nb batch: {speed:,.0f} items/s = {speed / capacity:.2f}x the mock's capacity (goal >= 0.70)")
    print(f"  client CPU per item: {cpu * 1e3:.2f} ms")
    print(f"  memory per in-flight item: {engine / 1024:.1f} KiB, {engine / singles:.2f}x one BackgroundRun task "
          f"per run ({singles / 1024:.1f} KiB)")
    print(f"  re-attach to the finished {args.items:,}-item batch: {reattach:.2f} s = {reattach / 2.0:.2f}x the 2 s "
          "goal")
    print(f"  re-attach to a stopped {args.items:,}-item batch, following its {args.concurrency:,} runs in flight "
          f"again: {in_flight:.2f} s = {in_flight / 2.0:.2f}x the 2 s goal")


if __name__ == "__main__":
    main()
