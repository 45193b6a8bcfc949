"""Function tools across background turns: ``@tool`` schemas, one logical run over several responses, each call run
exactly once even when the run is interrupted, and runaway loops stopped with a named error."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import pydantic
import pytest

from agent_nb import (
    Agent,
    ConfigurationError,
    FunctionTool,
    ResponsesClient,
    RetryPolicy,
    SQLiteRunStore,
    ToolOutputsUnknown,
    ToolRoundsExceeded,
    tool,
)
from agent_nb._items import OutputItems
from mock_server import GenerationOptions, MockServer, ServerConfig

from ..helpers import run_worker

RETRY = RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)
FAST = "tokens=12,tps=0,ttft=0,queue_delay=0,tool_time=0"
FAST_OPTIONS = GenerationOptions(tokens=12, tps=0, ttft=0, queue_delay=0, tool_time=0)


class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Window(pydantic.BaseModel):
    start: str
    days: int = 1


def script(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"background": True, "metadata": {"mock_options": FAST, "mock_agent": json.dumps(list(steps))}}


class Counted:
    """Tools that count their invocations."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def price_tool(self) -> FunctionTool:
        @tool(description="The latest price of a stock.")
        def get_price(ticker: Annotated[str, "The ticker symbol, such as MSFT."]) -> dict[str, Any]:
            self.calls.append(("get_price", {"ticker": ticker}))
            if ticker == "BAD":
                raise ValueError(f"unknown ticker {ticker}")
            return {"ticker": ticker, "price": 412.3}
        return get_price


@pytest.fixture
async def client(mock: MockServer) -> AsyncIterator[ResponsesClient]:
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    yield client
    await client.aclose()


def test_a_tool_is_described_by_its_type_hints_in_agent_frameworks_shape() -> None:
    @tool(approval_mode="always_require")
    async def book(city: Annotated[str, "Where to"], unit: Unit, when: Window, kind: Literal["a", "b"] = "a",
                   seats: list[int] | None = None, note: Annotated[str, pydantic.Field(description="Free text")] = ""
                   ) -> str:
        """Book a trip.

        More words that are not the summary."""
        return city

    assert (book.name, book.description, book.approval_mode) == ("book", "Book a trip.", "always_require")
    schema = book.parameters
    assert schema["required"] == ["city", "unit", "when"] and schema["additionalProperties"] is False
    properties = schema["properties"]
    assert properties["city"] == {"type": "string", "description": "Where to"}
    assert properties["unit"] == {"enum": ["c", "f"]}
    assert properties["when"]["properties"]["days"]["type"] == "integer"
    assert properties["kind"] == {"enum": ["a", "b"], "default": "a"}
    assert properties["seats"] == {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}],
                                   "default": None}
    assert properties["note"] == {"type": "string", "description": "Free text", "default": ""}
    assert book.to_dict()["type"] == "function" and book.to_dict()["name"] == "book"
    assert asyncio.run(book.invoke('{"city": "Paris", "unit": "c", "when": {}}')) == "Paris"
    with pytest.raises(ConfigurationError, match="not valid"):
        FunctionTool(lambda: None)  # "<lambda>" is no tool name
    with pytest.raises(ConfigurationError, match="approval_mode"):
        tool(approval_mode="sometimes")(test_a_tool_is_described_by_its_type_hints_in_agent_frameworks_shape)  # type: ignore[call-overload]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "polled"])
async def test_a_run_calls_the_agents_functions_and_follows_the_answer(client: ResponsesClient, tmp_path: Path,
                                                                        mock: MockServer, stream: bool) -> None:
    counted = Counted()
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"), tools=[counted.price_tool()])
    run = agent.start("MSFT?", stream=stream, poll_interval=0.01, options=script(
        {"call": "get_price", "arguments": {"ticker": "MSFT"}}, {"answer": "MSFT is at {output}."}))
    response = await run.wait()
    assert counted.calls == [("get_price", {"ticker": "MSFT"})]
    assert response.text == 'MSFT is at {"ticker": "MSFT", "price": 412.3}.'
    assert [i["type"] for i in response.items] == ["function_call", "function_call_output", "message"]
    assert response.items[1]["call_id"] == response.items[0]["call_id"]
    # One logical run: its record is at the last response, which continued the first.
    record = agent.store.get(run.run_id or "")  # type: ignore[union-attr]
    final = httpx.get(f"{mock.url}/responses/{record.response_id}", timeout=10).json()
    assert final["previous_response_id"] == record.chain["legs"][0]  # type: ignore[index]
    assert (record.status, record.text, record.output) == ("completed", response.text, response.items)
    assert [c.type for c in response.contents][:2] == ["function_call", "function_result"]


async def test_agent_framework_style_polling_drives_the_tool_loop(client: ResponsesClient) -> None:
    counted = Counted()
    agent = Agent(client, model="o3", store=False, tools=[counted.price_tool()])
    response = await agent.run("MSFT?", options=script({"call": "get_price", "arguments": {"ticker": "MSFT"}},
                                                       {"answer": "Done: {output}"}))
    tokens = []
    while response.continuation_token is not None:
        tokens.append(response.continuation_token)
        response = await agent.run(options={"continuation_token": response.continuation_token})
    assert response.text.startswith("Done: ") and len(counted.calls) == 1
    assert len({t.response_id for t in tokens}) == 2  # the token moved on to the follow-up response


async def test_independent_calls_run_concurrently_and_failures_become_outputs(client: ResponsesClient) -> None:
    first_started, second_started = asyncio.Event(), asyncio.Event()

    @tool
    async def first(x: int) -> str:
        first_started.set()
        await asyncio.wait_for(second_started.wait(), 5)  # only returns if both run at once
        return f"first {x}"

    @tool
    def second(y: int) -> str:
        return "second"

    @tool
    async def third(y: int) -> str:
        second_started.set()
        raise RuntimeError("third is broken")

    agent = Agent(client, model="o3", store=False, tools=[first, second, third])
    response = await agent.start("Go", options=script(
        {"call": "first", "arguments": {"x": 1}}, {"call": "third", "arguments": {"y": 2}},
        {"call": "missing", "arguments": {}}, {"answer": "{output:first} / {output:third} / {output:missing}"})).wait()
    first_output, third_output, missing_output = response.text.split(" / ")
    assert first_output == "first 1"
    assert third_output == "Error: RuntimeError: third is broken"
    assert missing_output.startswith("Error: no tool named 'missing' is available here")


async def test_a_runaway_tool_loop_is_stopped_with_a_named_error(client: ResponsesClient, tmp_path: Path) -> None:
    counted = Counted()
    agent = Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"), tools=[counted.price_tool()],
                  max_tool_rounds=2)
    call = {"call": "get_price", "arguments": {"ticker": "MSFT"}}
    run = agent.start("Loop", options=script(call, {"reasoning": "again"}, call, {"reasoning": "again"}, call))
    with pytest.raises(ToolRoundsExceeded, match="max_tool_rounds=2"):
        await run.wait()
    assert len(counted.calls) == 2
    record = agent.store.get(run.run_id or "")  # type: ignore[union-attr]
    assert record.status == "failed" and record.error["code"] == "max_tool_rounds"  # type: ignore[index]


async def test_an_interrupted_round_resumes_without_running_a_recorded_call_again(client: ResponsesClient,
                                                                                 mock: MockServer,
                                                                                 tmp_path: Path) -> None:
    ran: list[str] = []
    blocked = asyncio.Event()

    @tool
    def quick(n: int) -> str:
        ran.append("quick")
        return "quick done"

    @tool
    async def slow(n: int) -> str:
        ran.append("slow")
        blocked.set()
        await asyncio.Event().wait()  # the process "dies" while this runs
        return "never"

    path = tmp_path / "runs.sqlite3"
    steps = ({"call": "quick", "arguments": {"n": 1}}, {"call": "slow", "arguments": {"n": 2}},
             {"answer": "{output:quick} and {output:slow}"})
    agent = Agent(client, model="o3", store=SQLiteRunStore(path), tools=[quick, slow])
    run = agent.start("Both", options=script(*steps))
    await asyncio.wait_for(blocked.wait(), 10)
    run._task.cancel()  # type: ignore[union-attr]  # as if the kernel died mid-round
    with contextlib.suppress(asyncio.CancelledError):
        await run._task  # type: ignore[misc]
    record = SQLiteRunStore(path).get(run.run_id or "")
    assert record.chain["step"] == "tools"  # type: ignore[index]
    assert [c["output"] for c in record.chain["calls"]] == ["quick done", None]  # type: ignore[index]

    @tool(name="slow")
    def slow_again(n: int) -> str:
        ran.append("slow again")
        return "slow done"

    fresh = Agent(ResponsesClient(mock.url, "sk-test", retry=RETRY), model="o3", store=SQLiteRunStore(path),
                  tools=[quick, slow_again])
    response = await fresh.resume(run.run_id or "").wait()
    assert response.text == "quick done and slow done"
    assert ran == ["quick", "slow", "slow again"]  # the recorded call was not run again
    follow_ups = [i for i in response.items if i["type"] == "function_call_output"]
    assert len(follow_ups) == 2
    await fresh.client.aclose()


async def test_a_round_interrupted_while_submitting_is_lost_rather_than_submitted_twice(client: ResponsesClient,
                                                                                       tmp_path: Path) -> None:
    counted = Counted()
    path = tmp_path / "runs.sqlite3"
    agent = Agent(client, model="o3", store=SQLiteRunStore(path), tools=[counted.price_tool()])
    run = agent.start("MSFT?", options=script({"call": "get_price", "arguments": {"ticker": "MSFT"}},
                                              {"answer": "{output}"}))
    await run.wait()
    record = agent.store.get(run.run_id or "")  # type: ignore[union-attr]
    # As a process that died after sending the outputs, before it learned the new response's id, left it:
    chain = {**record.chain, "step": "submitting", "calls": [{"call_id": "c", "name": "get_price",  # type: ignore[dict-item]
                                                              "arguments": "{}", "output": "x"}]}
    agent.store.update(record.run_id, status="in_progress", response_id=record.chain["legs"][0],  # type: ignore[index, union-attr]
                       sequence_number=None, chain=chain)
    with pytest.raises(ToolOutputsUnknown, match="does not submit them twice"):
        await agent.resume(record.run_id).wait()
    assert agent.store.get(record.run_id).status == "lost"  # type: ignore[union-attr]
    assert len(counted.calls) == 1


async def test_breaking_the_answer_response_and_resuming_keeps_text_and_items_exact(client: ResponsesClient,
                                                                                    mock: MockServer,
                                                                                    tmp_path: Path) -> None:
    counted = Counted()
    path = tmp_path / "runs.sqlite3"
    agent = Agent(client, model="o3", store=SQLiteRunStore(path), tools=[counted.price_tool()])
    steps = ({"reasoning": "Look it up."}, {"call": "get_price", "arguments": {"ticker": "MSFT"}},
             {"search": "MSFT news"}, {"answer": "MSFT: {output}, and the news is calm."})
    run = agent.start("MSFT?", options=script(*steps), launch=False)
    first_response = None
    async with contextlib.aclosing(run.updates()) as updates:
        async for update in updates:
            first_response = first_response or update.response_id
            if update.response_id != first_response and update.type == "response.web_search_call.searching":
                break  # in the middle of the second response
    record = SQLiteRunStore(path).get(run.run_id or "")
    assert record.response_id != first_response and record.chain["prefix_count"] == 3  # type: ignore[index]
    # What is stored: the first response's items and the outputs, then exactly what events 0..seq built.
    with httpx.Client(timeout=10) as http, http.stream("GET", f"{mock.url}/responses/{record.response_id}",
                                                       params={"stream": "true"}) as answer:
        events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
    folder = OutputItems()
    for event in events[:(record.sequence_number or 0) + 1]:
        folder.apply(event, 0)
    assert record.items[3:] == folder.stored()  # type: ignore[index]
    assert [i["type"] for i in record.output[:3]] == ["reasoning", "function_call", "function_call_output"]
    assert record.text == ""  # no answer text yet: the first response had none
    fresh = Agent(ResponsesClient(mock.url, "sk-test", retry=RETRY), model="o3", store=SQLiteRunStore(path),
                  tools=[counted.price_tool()])
    response = await fresh.resume(run.run_id or "").wait()
    assert response.text == 'MSFT: {"ticker": "MSFT", "price": 412.3}, and the news is calm.'
    assert [i["type"] for i in response.items] == ["reasoning", "function_call", "function_call_output",
                                                   "web_search_call", "message"]
    last = httpx.get(f"{mock.url}/responses/{response.response_id}", timeout=10).json()
    assert response.items[3:] == last["output"] and len(counted.calls) == 1
    await fresh.client.aclose()


def test_killed_at_random_points_each_recorded_call_runs_once_and_each_round_is_submitted_once(
        tmp_path: Path) -> None:
    rng = random.Random(20261203)
    store, log = tmp_path / "runs.sqlite3", tmp_path / "calls.log"
    with MockServer(ServerConfig(options=FAST_OPTIONS)) as server:
        target, recorded, text = "start", set(), None
        for attempt in range(40):
            kill_after = rng.randint(1, 25) if attempt < 12 else None
            lines = _run_worker(server.url, store, log, target, kill_after)
            if target == "start":
                target = next(line.split()[1] for line in lines if line.startswith("RUN "))
            ran = {line.split()[1] for line in lines if line.startswith("RAN ")}
            assert not ran & recorded, f"attempt {attempt}: a call whose output was recorded ran again: {lines}"
            recorded |= {line.split()[1] for line in lines if line.startswith("DONE ")}
            ends = [line for line in lines if line.startswith(("END ", "LOST"))]
            if ends:
                text = ends[0][4:]
                break
        responses = httpx.get(f"{server.base_url}/mock/health", timeout=10).json()["responses"]
    record = SQLiteRunStore(store).get(target)
    rounds = len(record.chain["legs"])  # type: ignore[index]
    if record.status == "lost":  # a kill landed while outputs were being submitted: never submitted twice
        assert record.error["code"] == "tool_outputs_unknown" and responses <= rounds + 1  # type: ignore[index]
        return
    assert text == "last=value of c, done.", f"the run did not complete in {attempt + 1} attempts"
    # Two rounds of calls, so three responses: no round's outputs were submitted twice.
    assert record.status == "completed" and rounds == 2 and responses == 3
    assert set(log.read_text().split()) >= {"ran", "a", "b", "c"}


def _run_worker(url: str, store: Path, log: Path, target: str, kill_after: int | None) -> list[str]:
    """The lines a worker printed (until killed after ``kill_after``), and ``RAN key`` for each call it ran."""
    before = len(log.read_text().splitlines()) if log.exists() else 0
    lines, _ = run_worker("tests.core.tool_worker", url, str(store), str(log), target, kill_after=kill_after)
    after = log.read_text().splitlines() if log.exists() else []
    return lines + [f"RAN {entry.split()[1]}" for entry in after[before:]]


TRAJECTORY = ({"reasoning": "Plan: search, then price, then compute."}, {"search": "MSFT Q4 launch"},
              {"open_page": "https://example.com/msft"}, {"find_in_page": "price", "url": "https://example.com/msft"},
              {"call": "get_price", "arguments": {"ticker": "MSFT"}}, {"code": "print(412.3 * 2)", "logs": "824.6\n"},
              {"answer": "MSFT is at {output}; twice that is 824.6.",
               "citations": [{"url": "https://example.com/msft", "title": "MSFT", "text": "twice that"}]})


async def test_a_whole_trajectory_broken_and_resumed_at_every_event_ends_exactly_as_the_service_has_it(
        client: ResponsesClient, mock: MockServer, tmp_path: Path) -> None:
    counted = Counted()
    path = tmp_path / "runs.sqlite3"
    agent = Agent(client, model="o3", store=SQLiteRunStore(path), tools=[counted.price_tool()])
    whole = [u async for u in agent.run("MSFT?", stream=True, options=script(*TRAJECTORY))]
    assert len({u.response_id for u in whole}) == 2  # two responses: the call, then code and the cited answer
    for stop in range(len(whole) - 1):
        counted.calls.clear()
        run = agent.start("MSFT?", options=script(*TRAJECTORY), launch=False)
        async with contextlib.aclosing(run.updates()) as updates:
            seen = 0
            async for _ in updates:
                seen += 1
                if seen > stop:
                    break
        fresh = Agent(ResponsesClient(mock.url, "sk-test", retry=RETRY), model="o3", store=SQLiteRunStore(path),
                      tools=[counted.price_tool()])
        final = await fresh.resume(run.run_id or "").wait()
        last = httpx.get(f"{mock.url}/responses/{final.response_id}", timeout=10).json()
        first = httpx.get(f"{mock.url}/responses/{last['previous_response_id']}", timeout=10).json()
        outputs = [{"type": "function_call_output", "call_id": first["output"][-1]["call_id"],
                    "output": '{"ticker": "MSFT", "price": 412.3}'}]
        assert final.items == first["output"] + outputs + last["output"], f"after update {stop}"
        assert final.text == 'MSFT is at {"ticker": "MSFT", "price": 412.3}; twice that is 824.6.'
        assert counted.calls == [("get_price", {"ticker": "MSFT"})], f"after update {stop}: {counted.calls}"
        await fresh.client.aclose()
