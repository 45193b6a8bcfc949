"""A run is a sequence of output items, not a string: reasoning, searches, code, calls and cited messages, kept as they
stream, stored with the text, rebuilt exactly when a run is broken and resumed at any event, and handed out as typed
contents in Agent Framework's shape."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_nb import Agent, ResponsesClient, RetryPolicy, SQLiteRunStore
from agent_nb._items import OutputItems, expand_items
from mock_server import MockServer

RETRY = RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)
FAST = "tokens=12,tps=0,ttft=0,queue_delay=0,tool_time=0"
PRICE = {"type": "function", "name": "get_price", "parameters": {
    "type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}}
CITED = [
    {"reasoning": ["Plan the search.", "Then compare."]},
    {"search": "Contoso launch price", "sources": ["https://example.com/a"]},
    {"open_page": "https://example.com/a"},
    {"find_in_page": "price", "url": "https://example.com/a"},
    {"code": "print(2 * 21)", "logs": "42\n"},
    {"answer": "The price is 42 <b>dollars</b>, per Contoso.",
     "citations": [{"url": "https://example.com/a", "title": "Contoso", "text": "per Contoso"}]},
]
CALLING = [{"reasoning": "I need the price."}, {"search": "MSFT price"},
           {"call": "get_price", "arguments": {"ticker": "MSFT", "note": "ünïcode ✓ " * 3}}]


def options(script: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"background": True, "tools": [{"type": "web_search"}, PRICE],
            "metadata": {"mock_options": FAST, "mock_agent": json.dumps(script)}, **extra}


@pytest.fixture
async def agent(mock: MockServer, tmp_path: Path) -> AsyncIterator[Agent]:
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    yield Agent(client, model="o3", store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
    await client.aclose()


def service(mock: MockServer, response_id: str) -> dict[str, Any]:
    return httpx.get(f"{mock.url}/responses/{response_id}", timeout=10).json()  # type: ignore[no-any-return]


def service_events(mock: MockServer, response_id: str) -> list[dict[str, Any]]:
    with httpx.Client(timeout=10) as http, http.stream("GET", f"{mock.url}/responses/{response_id}",
                                                       params={"stream": "true"}) as answer:
        return [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]


def folded(events: list[dict[str, Any]], through: int) -> tuple[str, list[dict[str, Any]]]:
    """The text and items events ``0..through`` build, folded independently of any run."""
    folder, text = OutputItems(), ""
    for event in events[:through + 1]:
        if event["type"] == "response.output_text.delta":
            text += event["delta"]
        else:
            folder.apply(event, len(text))
    return text, folder.snapshot(text)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "polled"])
async def test_a_run_keeps_every_output_item_exactly_as_the_service_has_it(agent: Agent, mock: MockServer,
                                                                           stream: bool) -> None:
    run = agent.start("Price?", options=options(CITED), stream=stream, poll_interval=0.01)
    response = await run.wait()
    output = service(mock, response.response_id or "")["output"]
    assert [i["type"] for i in output] == ["reasoning", "web_search_call", "web_search_call", "web_search_call",
                                           "code_interpreter_call", "message"]
    assert run.items == response.items == output
    record = agent.store.get(run.run_id or "")  # type: ignore[union-attr]
    assert record.output == output and record.text == response.text == "The price is 42 <b>dollars</b>, per Contoso."
    # The stored items do not repeat the text: the message holds a span of it.
    (part,) = record.items[-1]["content"]  # type: ignore[index]
    assert "text" not in part and part["_span"] == [0, len(record.text)]


async def test_breaking_at_every_event_and_resuming_rebuilds_the_same_items(agent: Agent, mock: MockServer,
                                                                            tmp_path: Path) -> None:
    whole = await agent.start("Price?", options=options(CALLING)).wait()
    events = service_events(mock, whole.response_id or "")
    arguments = [e["sequence_number"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(arguments) > 3  # so breaks fall inside the arguments too
    for stop in range(len(events) - 1):
        run = agent.start("Price?", options=options(CALLING), launch=False)
        async with contextlib.aclosing(run.updates()) as updates:
            async for update in updates:
                if update.sequence_number == stop:
                    break
        # Mid-run, the store holds exactly what events 0..stop build (the same events as the reference run's).
        record = agent.store.get(run.run_id or "")  # type: ignore[union-attr]
        mine = service_events(mock, run.response_id or "")
        assert record.sequence_number == stop
        assert (record.text, record.output) == folded(mine, stop), f"stored state after event {stop}"
        # Resumed by run id in a fresh agent and store (a restarted kernel), the run ends with the service's items.
        other = Agent(ResponsesClient(mock.url, "sk-test", retry=RETRY), model="o3",
                      store=SQLiteRunStore(tmp_path / "runs.sqlite3"))
        resumed = other.resume(run.run_id or "")
        final = await resumed.wait()
        assert final.items == service(mock, run.response_id or "")["output"], f"break after event {stop}"
        assert final.items[-1]["type"] == "function_call"
        assert json.loads(final.items[-1]["arguments"]) == {"ticker": "MSFT", "note": "ünïcode ✓ " * 3}
        await other.client.aclose()


async def test_updates_carry_typed_contents_in_agent_frameworks_shape(agent: Agent) -> None:
    updates = [u async for u in agent.run("Price?", stream=True, options=options(CITED))]
    contents = [c for u in updates for c in u.contents]
    kinds = [c.type for c in contents]
    reasoning = "".join(c.text or "" for c in contents if c.type == "text_reasoning")
    assert reasoning == "Plan the search.Then compare."
    searches = [c for c in contents if c.type == "search_tool_call"]
    assert [c.status for c in searches[:3]] == ["in_progress", "searching", "completed"]
    assert searches[0].result == {"type": "search", "query": "Contoso launch price",
                                  "sources": [{"type": "url", "url": "https://example.com/a"}]}
    code = "".join(i.text or "" for c in contents if c.type == "code_interpreter_tool_call" for i in c.inputs or [])
    assert code == "print(2 * 21)" + "print(2 * 21)"  # the deltas, then the settled call
    (result,) = [c for c in contents if c.type == "code_interpreter_tool_result"]
    assert [o.text for o in result.outputs or []] == ["42\n"]
    text = "".join(c.text or "" for c in contents if c.type == "text")
    assert text == "".join(u.text for u in updates) == "The price is 42 <b>dollars</b>, per Contoso."
    (cited,) = [c for c in contents if c.type == "text" and c.annotations]
    (annotation,) = cited.annotations or []
    assert annotation["type"] == "citation" and annotation["url"] == "https://example.com/a"
    region = annotation["annotated_regions"][0]
    assert text[region["start_index"]:region["end_index"]] == "per Contoso"
    assert kinds[-1] == "usage" and contents[-1].usage_details["output_token_count"] > 0  # type: ignore[index]
    # The final response reads the same way, item by item.
    response_contents = (await agent.start("Price?", options=options(CITED)).wait()).contents
    assert [c.type for c in response_contents] == ["text_reasoning", "search_tool_call", "search_tool_call",
                                                   "search_tool_call", "code_interpreter_tool_call",
                                                   "code_interpreter_tool_result", "text", "usage"]
    assert response_contents[0].text == "Plan the search.\n\nThen compare."


async def test_a_function_call_is_announced_streamed_and_settled(agent: Agent) -> None:
    updates = [u async for u in agent.run("Price?", stream=True, options=options(CALLING))]
    calls = [c for u in updates for c in u.contents if c.type == "function_call"]
    announced, *deltas, settled = calls
    assert announced.name == settled.name == "get_price" and announced.call_id == settled.call_id
    assert all(d.merge_mode == "append" and d.call_id == announced.call_id for d in deltas)
    assert "".join(d.arguments or "" for d in deltas) == settled.arguments and settled.merge_mode == "replace"
    assert settled.parse_arguments()["ticker"] == "MSFT"


class ScriptedClient(ResponsesClient):
    """A client whose server answers one handcrafted event stream: for events no mock would send."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__("http://127.0.0.1:9/v1", "sk-test", retry=RETRY)
        body = "".join(f"event: {e.get('type')}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
        self._transport = httpx.MockTransport(lambda request: httpx.Response(
            200, stream=httpx.ByteStream(body), headers={"content-type": "text/event-stream"}))

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.base_url + "/", transport=self._transport)
        return self._http


def _response(status: str, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "output": output or [], "usage": None}


async def test_unknown_and_malformed_events_are_kept_raw_and_never_fatal() -> None:
    future_item = {"type": "hologram_call", "id": "hg_1", "status": "in_progress", "frames": 0}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": future_item},
        {"type": "response.hologram_call.frame", "sequence_number": 2, "output_index": 0, "frame": "✨"},
        {"type": "response.reasoning_summary_text.delta", "sequence_number": 3, "output_index": 7, "delta": "?"},
        {"type": "response.output_item.added", "sequence_number": 4, "output_index": 1, "item": message},
        {"type": "response.content_part.added", "sequence_number": 5, "output_index": 1, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "sequence_number": 6, "output_index": 1, "content_index": 0,
         "delta": "Hello"},
        {"type": "response.output_text.annotation.added", "sequence_number": 7, "output_index": 1},
        {"type": "response.output_item.done", "sequence_number": 8, "output_index": 0,
         "item": {**future_item, "status": "completed", "frames": 3}},
    ]
    folder = OutputItems()
    for event in events:
        if event["type"] != "response.output_text.delta":
            folder.apply(event, 5 if event["sequence_number"] > 6 else 0)
    output = folder.snapshot("Hello")
    assert output[0] == {**future_item, "status": "completed", "frames": 3}  # an unknown item, kept whole
    assert output[1]["content"][0]["text"] == "Hello"
    events.append({"type": "response.completed", "sequence_number": 9, "response": _response("completed", output)})
    client = ScriptedClient(events)
    agent = Agent(client, model="o3", store=False)
    updates = [u async for u in agent.run("Hi", stream=True, options={"background": True})]
    assert [u.raw_representation for u in updates] == events  # every event handed out, as it came
    # Nothing is made up for what is unknown; a known event type reads as such even for an item never announced.
    assert [(c.type, c.text) for u in updates for c in u.contents] == [("text_reasoning", "?"), ("text", "Hello")]
    assert updates[-1].status == "completed"
    await client.aclose()


def test_stored_items_put_each_messages_text_back_from_its_span() -> None:
    items = [{"type": "reasoning", "id": "rs", "summary": []},
             {"type": "message", "id": "m1", "content": [{"type": "output_text", "annotations": [], "_span": [0, 5]}]},
             {"type": "message", "id": "m2", "content": [{"type": "output_text", "annotations": [],
                                                          "_span": [5, None]}]}]
    assert [part["text"] for item in expand_items(items, "HelloWorld!")[1:] for part in item["content"]] == [
        "Hello", "World!"]
    assert items[1]["content"][0] == {"type": "output_text", "annotations": [], "_span": [0, 5]}  # not changed


async def test_frames_split_inside_a_reasoning_summarys_characters_fold_to_the_same_items(agent: Agent,
                                                                                         mock: MockServer) -> None:
    steps = [{"reasoning": "Plan ✓: 市场分析 then 🚀 👩\u200d💻 e\u0301"}, {"answer": "Done: 第四季度 ✅."}]
    opts = options(steps)
    opts["metadata"]["mock_faults"] = "split=3,drop_after=9"  # pieces of 3 bytes, and a drop mid-summary
    run = agent.start("Plan", options=opts)
    response = await run.wait()
    output = service(mock, response.response_id or "")["output"]
    assert response.items == output and response.text == "Done: 第四季度 ✅."
    assert output[0]["summary"][0]["text"] == steps[0]["reasoning"] and run.reconnects == 1
