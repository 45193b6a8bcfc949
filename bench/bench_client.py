"""How fast agent-nb consumes a run's event stream, against the openai SDK and a plain httpx loop.

All consumers replay the same finished 50,000-event response from one mock server (a subprocess, so this process
has a core to itself). Figures are printed as ratios measured in this run:

* events/s of agent-nb (``Agent.run(stream=True)`` with state, tokens and checkpoints) against the ``openai`` SDK's
  ``responses.retrieve(..., stream=True)`` and against plain ``httpx`` line iteration with ``json.loads``;
* checkpoint cost: the same stream with the run store on and off;
* resume latency: a reconnect with ``starting_after`` to the first replayed event, against the SDK doing the same;
* resuming from a token whose earlier text is not known here (the stream is replayed from event 0, quietly up to the
  token, so that the run's text and the store stay exact), against resuming where the store has the text;
* the output-item fold on an agent run's stream (a third each of reasoning-summary, code and text deltas, plus
  searches): agent-nb keeping every item against the same run with the fold switched off (text only, as before items
  existed), and against the openai SDK on the same stream.

Run: ``python bench/bench_client.py [--events 50000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_nb import Agent, ResponsesClient, SQLiteRunStore  # noqa: E402
from agent_nb._items import OutputItems  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


AGENT_PROMPT = "Agent benchmark"


def write_agent_script(path: Path, events: int) -> None:
    """A ``--script`` file whose agent run streams ``events`` deltas: reasoning, code and an answer in thirds."""
    words = " ".join(f"w{i}" for i in range(events // 3))
    steps = [{"reasoning": words}, *({"search": f"query {i}"} for i in range(10)), {"code": words},
             {"answer": words}]
    path.write_text(json.dumps([{"prompt": AGENT_PROMPT, "agent": steps}]), encoding="utf-8")


def start_server(port: int, script: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--port", str(port), "--tps", "0", "--ttft", "0",
                             "--queue-delay", "0", "--script", str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "Mock Responses server on" not in line:
        proc.kill()
        raise SystemExit(f"mock server did not start: {line!r}")
    return proc


async def make_response(url: str, events: int, prompt: str = "Benchmark") -> str:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        created = (await http.post("/responses", json={
            "model": "bench", "input": prompt, "background": True,
            "metadata": {"mock_options": f"tokens={events},tps=0,ttft=0,queue_delay=0,tool_time=0"}})).json()
        deadline = time.monotonic() + 120
        while (await http.get(f"/responses/{created['id']}")).json()["status"] != "completed":
            if time.monotonic() > deadline:
                raise SystemExit("the benchmark response did not complete")
            await asyncio.sleep(0.05)
        return str(created["id"])


async def plain_httpx(url: str, response_id: str) -> int:
    count = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as http, \
            http.stream("GET", f"/responses/{response_id}", params={"stream": "true"}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                json.loads(line[6:])
                count += 1
    return count


async def openai_sdk(url: str, response_id: str) -> int:
    count = 0
    async with openai.AsyncOpenAI(base_url=url, api_key="bench") as client:
        stream = await client.responses.retrieve(response_id, stream=True)
        async for _ in stream:
            count += 1
    return count


def text_only(consumer: Callable[[str, str], Awaitable[int]]) -> Callable[[str, str], Awaitable[int]]:
    """The same consumer with the output-item fold switched off: the text-only path."""
    async def consume(url: str, response_id: str) -> int:
        apply = OutputItems.apply
        OutputItems.apply = lambda self, event, text_length: None  # type: ignore[method-assign,assignment,return-value]
        try:
            return await consumer(url, response_id)
        finally:
            OutputItems.apply = apply  # type: ignore[method-assign]
    return consume


def agent_nb_consumer(store: bool) -> Callable[[str, str], Awaitable[int]]:
    async def consume(url: str, response_id: str) -> int:
        with tempfile.TemporaryDirectory() as home:
            client = ResponsesClient(url, "bench")
            agent = Agent(client, model="bench", store=SQLiteRunStore(Path(home) / "runs.sqlite3") if store else False)
            count = 0
            async for _ in agent.run(stream=True, options={"continuation_token": {"response_id": response_id}}):
                count += 1
            await client.aclose()
            if agent.store is not None:
                agent.store.close()
        return count
    return consume


async def first_event_latency_agent_nb(url: str, response_id: str, after: int) -> float:
    client = ResponsesClient(url, "bench")
    await client.retrieve(response_id)  # a warm client, as after a drop
    started = time.perf_counter()
    async for _ in client.stream_resume(response_id, after):
        elapsed = time.perf_counter() - started
        break
    await client.aclose()
    return elapsed


async def first_event_latency_sdk(url: str, response_id: str, after: int) -> float:
    async with openai.AsyncOpenAI(base_url=url, api_key="bench") as client:
        await client.responses.retrieve(response_id)  # a warm client, as after a drop
        started = time.perf_counter()
        stream = await client.responses.retrieve(response_id, stream=True, starting_after=after)
        async for _ in stream:
            elapsed = time.perf_counter() - started
            break
        await stream.close()
    return elapsed


async def first_update_after_token(url: str, response_id: str, after: int, *, known: bool) -> float:
    """Seconds from resuming at ``after`` to the first update after it; ``known``: the store has the text up to it."""
    with tempfile.TemporaryDirectory() as home:
        client = ResponsesClient(url, "bench")
        agent = Agent(client, model="bench", store=SQLiteRunStore(Path(home) / "runs.sqlite3"))
        token = None
        if known:  # follow the stream to the token first, as the process that printed it did
            async with contextlib.aclosing(agent.run(stream=True, options={"continuation_token": {
                    "response_id": response_id}})) as updates:
                async for update in updates:
                    token = update.continuation_token
                    if update.sequence_number == after:
                        break
        await client.retrieve(response_id)  # a warm client
        started = time.perf_counter()
        async with contextlib.aclosing(agent.run(stream=True, options={"continuation_token": token or {
                "response_id": response_id, "sequence_number": after}})) as updates:
            async for update in updates:
                assert update.sequence_number == after + 1
                elapsed = time.perf_counter() - started
                break
        await client.aclose()
        assert agent.store is not None
        agent.store.close()
    return elapsed


async def best_rate(consumer: Callable[[str, str], Awaitable[int]], url: str, response_id: str,
                    repeat: int) -> tuple[float, int]:
    rates = []
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = await consumer(url, response_id)
        rates.append(count / (time.perf_counter() - started))
    return max(rates), count


async def main(events: int, repeat: int) -> None:
    port = free_port()
    script = Path(tempfile.mkdtemp()) / "agent.json"
    write_agent_script(script, events)
    server = start_server(port, script)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        response_id = await make_response(url, events)
        print(f"Stream: {events:,} text deltas from one finished response, replayed by each consumer "
              f"(best of {repeat}).\n")
        rows = {}
        for name, consumer in [("plain httpx lines + json.loads (the limit)", plain_httpx),
                               ("openai SDK responses.retrieve(stream=True)", openai_sdk),
                               ("agent-nb Agent.run(stream=True), store off", agent_nb_consumer(False)),
                               ("agent-nb Agent.run(stream=True), store on", agent_nb_consumer(True))]:
            rate, count = await best_rate(consumer, url, response_id, repeat)
            rows[name] = rate
            print(f"  {name:<46} {rate:>10,.0f} events/s  ({count:,} events)")
        ours_on = rows["agent-nb Agent.run(stream=True), store on"]
        ours_off = rows["agent-nb Agent.run(stream=True), store off"]
        sdk = rows["openai SDK responses.retrieve(stream=True)"]
        plain = rows["plain httpx lines + json.loads (the limit)"]
        print()
        print(f"agent-nb (store on) vs openai SDK:        {ours_on / sdk:6.1f}x")
        print(f"agent-nb (store on) vs plain httpx loop:  {ours_on / plain:6.2f}x")
        print(f"checkpoint overhead (store on vs off):    {100 * (ours_off / ours_on - 1):+6.1f}% time per event")
        after = events // 2
        ours = [await first_event_latency_agent_nb(url, response_id, after) for _ in range(20)]
        theirs = [await first_event_latency_sdk(url, response_id, after) for _ in range(20)]
        print(f"resume latency (reconnect to first replayed event, median of 20): agent-nb "
              f"{1000 * statistics.median(ours):.2f} ms, openai SDK {1000 * statistics.median(theirs):.2f} ms "
              f"-> agent-nb takes {statistics.median(ours) / statistics.median(theirs):.2f}x the SDK's time")
        unknown = statistics.median([await first_update_after_token(url, response_id, after, known=False)
                                     for _ in range(repeat)])
        known = statistics.median([await first_update_after_token(url, response_id, after, known=True)
                                   for _ in range(repeat)])
        print(f"resume at event {after:,} with the text before it unknown here (replayed from event 0, quietly): "
              f"{1000 * unknown:.1f} ms to the first update after it; with the store's text: {1000 * known:.2f} ms "
              f"-> {unknown / known:.0f}x, the price of an exact text and store")
        await agent_items(url, events, repeat)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(5)


async def agent_items(url: str, events: int, repeat: int) -> None:
    response_id = await make_response(url, events, AGENT_PROMPT)
    items_on, count = await best_rate(agent_nb_consumer(True), url, response_id, repeat)
    items_off, _ = await best_rate(text_only(agent_nb_consumer(True)), url, response_id, repeat)
    sdk, _ = await best_rate(openai_sdk, url, response_id, repeat)
    print(f"\nAgent stream: {count:,} events (reasoning, 10 searches, code, answer), store on, best of {repeat}:")
    print(f"  agent-nb keeping every output item {items_on:>10,.0f} events/s")
    print(f"  agent-nb text only (fold off)      {items_off:>10,.0f} events/s")
    print(f"  openai SDK                         {sdk:>10,.0f} events/s")
    print(f"output-item fold cost: {100 * (items_off / items_on - 1):+.1f}% time per event against the text-only "
          f"path; agent-nb with items vs openai SDK: {items_on / sdk:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.repeat))
