"""Agent runs from the mock: reasoning, web searches, code, function calls and approvals, read the SDK's strict way.

Every event is validated against the openai SDK's own types (``ResponseStreamEvent``) with no field the SDK does not
know, and every Response is retrieved through a client with ``_strict_response_validation=True``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from mock_server import MockServer, ServerConfig
from mock_server.generation import ReplyScript

from ..conftest import FAST
from ..helpers import ServerProcess

_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
#: Fields the service sends on a Response that the SDK's type does not declare (see PROTOCOL.md).
_SENT_BY_THE_SERVICE = {"store"}
OPTIONS = {"mock_options": "tokens=24,tps=0,ttft=0,queue_delay=0,tool_time=0"}
PRICE = {"type": "function", "name": "get_price", "description": "The latest price of a stock.",
         "parameters": {"type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"],
                        "additionalProperties": False}}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "required": ["city", "unit", "days"], "additionalProperties": False,
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}
MCP = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com", "require_approval": "always"}
CODE = {"type": "code_interpreter", "container": {"type": "auto"}}


def assert_known_fields(value: object, path: str) -> None:
    """No field anywhere that the SDK's types do not declare (they would pass validation silently)."""
    if isinstance(value, pydantic.BaseModel):
        extra = set(value.model_extra or ()) - (_SENT_BY_THE_SERVICE if isinstance(value, Response) else set())
        assert not extra, f"{path} has fields the SDK does not know: {sorted(extra)}"
        for name in type(value).model_fields:
            assert_known_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_known_fields(item, f"{path}[{i}]")


def strict_events(lines: Iterator[str]) -> list[Any]:
    events = []
    for line in lines:
        if line.startswith("data: "):
            event = _EVENT.validate_python(json.loads(line[6:]))
            assert_known_fields(event, event.type)
            events.append(event)
    return events


def stream_create(http: httpx.Client, **body: Any) -> list[Any]:
    body = {"model": "o3", "input": "Q4 launch pricing", "background": True, "stream": True,
            "metadata": OPTIONS, **body}
    with http.stream("POST", "/v1/responses", json=body) as answer:
        assert answer.status_code == 200, answer.read()
        return strict_events(answer.iter_lines())


def stream_events(http: httpx.Client, response_id: str, starting_after: int | None = None) -> list[Any]:
    params: dict[str, Any] = {"stream": "true"}
    if starting_after is not None:
        params["starting_after"] = starting_after
    with http.stream("GET", f"/v1/responses/{response_id}", params=params) as answer:
        assert answer.status_code == 200
        return strict_events(answer.iter_lines())


def retrieved(client: openai.OpenAI, response_id: str) -> Response:
    response = client.responses.retrieve(response_id)
    assert_known_fields(response, "response")
    return response


@pytest.mark.parametrize(("tools", "extra", "expected"), [
    ([PRICE], {}, ["function_call"]),
    ([PRICE, WEATHER], {}, ["function_call", "function_call"]),
    ([{"type": "web_search"}], {}, ["web_search_call"] * 3 + ["message"]),
    ([{"type": "web_search_preview"}, CODE], {"reasoning": {"summary": "auto"}},
     ["reasoning", *["web_search_call"] * 3, "code_interpreter_call", "message"]),
    ([MCP], {}, ["mcp_approval_request"]),
    ([{**MCP, "require_approval": "never"}], {}, ["mcp_call", "message"]),
], ids=["function", "parallel-functions", "web-search", "reasoning-search-code", "mcp-approval", "mcp-call"])
def test_every_agent_item_and_event_reads_strictly_with_the_sdk(http: httpx.Client, client: openai.OpenAI,
                                                                  tools: list[dict[str, Any]], extra: dict[str, Any],
                                                                  expected: list[str]) -> None:
    events = stream_create(http, tools=tools, **extra)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [item.type for item in final.output] == expected
    # Each item is announced where the final response lists it, and done in that very shape.
    done = {e.output_index: e.item for e in events if e.type == "response.output_item.done"}
    assert [done[i] for i in range(len(expected))] == final.output
    again = retrieved(client, final.id)
    assert again.output == final.output and again.tools == final.tools
    # A replay is the same events, exactly.
    assert stream_events(http, final.id) == events


def test_a_declared_function_is_called_with_arguments_valid_against_its_schema(http: httpx.Client) -> None:
    nested = {"type": "function", "name": "book", "strict": False, "parameters": {
        "type": "object", "required": ["trip"], "$defs": {"when": {"type": "string", "format": "date"}},
        "properties": {"trip": {"type": "object", "required": ["to", "on", "seats"], "properties": {
            "to": {"type": "string", "minLength": 3}, "on": {"$ref": "#/$defs/when"},
            "seats": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}
    for tool in (PRICE, WEATHER, nested):
        events = stream_create(http, tools=[tool], input=f"Use {tool['name']}")
        calls = [item for item in events[-1].response.output if item.type == "function_call"]
        assert [c.name for c in calls] == [tool["name"]]
        jsonschema.validate(json.loads(calls[0].arguments), tool["parameters"])
        # The streamed argument deltas add up to the arguments.
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        assert deltas == calls[0].arguments
        done = [e for e in events if e.type == "response.function_call_arguments.done"]
        assert [d.arguments for d in done] == [calls[0].arguments]


def test_the_follow_up_with_the_functions_output_answers_using_it(client: openai.OpenAI) -> None:
    first = client.responses.create(model="o3", input="What is MSFT at?", tools=[PRICE], metadata=OPTIONS)
    call = first.output[-1]
    assert call.type == "function_call" and json.loads(call.arguments)["ticker"]
    # As a client that keeps no history sends it: previous_response_id and the output alone.
    second = client.responses.create(model="o3", tools=[PRICE], previous_response_id=first.id, metadata=OPTIONS,
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "412.30 USD"}])
    assert [i.type for i in second.output] == ["message"]
    assert second.output_text.startswith("Using get_price: 412.30 USD")
    # As a client that keeps the history sends it: the call inline, no previous_response_id.
    inline = client.responses.create(model="o3", tools=[PRICE], metadata=OPTIONS, input=[
        {"role": "user", "content": "What is MSFT at?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_price", "arguments": '{"ticker": "MSFT"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "99 USD"}])
    assert inline.output_text.startswith("Using get_price: 99 USD")


@pytest.mark.parametrize(("item", "message"), [
    ({"type": "function_call_output", "call_id": "call_unknown", "output": "1"},
     "No tool call found for function call output with call_id call_unknown."),
    ({"type": "mcp_approval_response", "approval_request_id": "mcpr_unknown", "approve": True},
     "No approval request found with id mcpr_unknown"),
])
def test_an_answer_to_no_call_is_a_400(http: httpx.Client, item: dict[str, Any], message: str) -> None:
    answer = http.post("/v1/responses", json={"model": "o3", "input": [item]})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(message) and answer.json()["error"]["param"] == "input"


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "computer_use_maybe"}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "has space"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": "{}"}]}, "tools[0].parameters"),
    ({"tools": [PRICE, PRICE]}, "tools[1].name"),
    ({"tools": [{"type": "mcp"}]}, "tools[0].server_label"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools[0].container"),
    ({"tools": [PRICE], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"reasoning": {"summary": "verbose"}}, "reasoning.summary"),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"input": [{"type": "function_call_output", "output": "1"}]}, "input[0].call_id"),
    ({"input": [{"type": "mcp_approval_response", "approval_request_id": "x", "approve": "yes"}]},
     "input[0].approve"),
    ({"model": "o3-deep-research"}, "tools"),
    ({"metadata": {"mock_agent": "[{\"fly\": 1}]"}}, "metadata.mock_agent"),
])
def test_bad_agent_input_is_a_400_naming_the_parameter(http: httpx.Client, body: dict[str, Any],
                                                         param: str) -> None:
    answer = http.post("/v1/responses", json={"model": "o3", "input": "x", **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


SCRIPT = [
    {"reasoning": "Compare the launch prices."},
    {"search": "Contoso Q4 launch price", "sources": ["https://example.com/contoso"]},
    {"open_page": "https://example.com/contoso"},
    {"find_in_page": "price", "url": "https://example.com/contoso"},
    {"call": "get_price", "arguments": {"ticker": "MSFT"}},
    {"code": "print(412 * 2)", "logs": "824\n"},
    {"answer": "MSFT is at {output}, twice that is 824.",
     "citations": [{"url": "https://example.com/contoso", "title": "Contoso", "text": "twice that"}]},
]


def test_a_scripted_trajectory_plays_across_the_legs(client: openai.OpenAI, http: httpx.Client) -> None:
    metadata = {**OPTIONS, "mock_agent": json.dumps(SCRIPT)}
    first = client.responses.create(model="o3", input="Price check", tools=[PRICE], metadata=metadata)
    assert [i.type for i in first.output] == ["reasoning", "web_search_call", "web_search_call", "web_search_call",
                                              "function_call"]
    actions = [i.action.type for i in first.output if i.type == "web_search_call"]
    assert actions == ["search", "open_page", "find_in_page"]
    assert first.output[0].summary[0].text == "Compare the launch prices."
    call = first.output[-1]
    assert json.loads(call.arguments) == {"ticker": "MSFT"}
    # The follow-up plays the next leg: the script carries over with previous_response_id.
    second = client.responses.create(model="o3", tools=[PRICE], previous_response_id=first.id, background=True,
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "412 USD"}], metadata=OPTIONS)
    events = stream_events(http, second.id)
    final = events[-1].response
    assert [i.type for i in final.output] == ["code_interpreter_call", "message"]
    code = final.output[0]
    assert code.code == "print(412 * 2)" and code.outputs[0].logs == "824\n"
    assert final.output_text == "MSFT is at 412 USD, twice that is 824."
    (annotation,) = final.output[1].content[0].annotations
    assert final.output_text[annotation.start_index:annotation.end_index] == "twice that"
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert [e.annotation.model_dump() for e in added] == [annotation.model_dump()]
    assert added[0].annotation_index == 0
    # ... announced right after the delta that completes the cited words.
    before = "".join(e.delta for e in events[:events.index(added[0])] if e.type == "response.output_text.delta")
    assert before.endswith("twice that ") or before.endswith("twice that")


def test_a_script_file_entry_can_hold_a_trajectory(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"contains": "price", "agent": SCRIPT[4:]}, {"prompt": "*", "reply": "Hi."}]))
    script = ReplyScript.load(path)
    config = ServerConfig(options=FAST, script=script)
    with MockServer(config) as server, openai.OpenAI(base_url=server.url, api_key="k",
                                                     _strict_response_validation=True) as sdk:
        first = sdk.responses.create(model="o3", input="What price?", tools=[PRICE])
        assert [i.type for i in first.output] == ["function_call"]
        assert sdk.responses.create(model="o3", input="hello").output_text == "Hi."


def test_an_approval_request_continues_approved_or_rejected(client: openai.OpenAI) -> None:
    first = client.responses.create(model="o3", input="Find the docs", tools=[MCP], metadata=OPTIONS)
    (request,) = first.output
    assert request.type == "mcp_approval_request" and request.server_label == "docs"
    approved = client.responses.create(model="o3", tools=[MCP], previous_response_id=first.id, metadata=OPTIONS,
                                       input=[{"type": "mcp_approval_response", "approval_request_id": request.id,
                                               "approve": True}])
    call, answer = approved.output
    assert call.type == "mcp_call" and call.approval_request_id == request.id and call.output
    assert answer.type == "message"
    assert approved.output_text.startswith(f"{request.name} was approved")
    rejected = client.responses.create(model="o3", tools=[MCP], previous_response_id=first.id, metadata=OPTIONS,
                                       input=[{"type": "mcp_approval_response", "approval_request_id": request.id,
                                               "approve": False, "reason": "not now"}])
    assert [i.type for i in rejected.output] == ["message"]
    assert rejected.output_text.startswith(f"{request.name} was not approved (not now)")


def test_a_deep_research_model_searches_reads_computes_and_cites(http: httpx.Client) -> None:
    events = stream_create(http, model="o3-deep-research", tools=[{"type": "web_search_preview"}])
    final = events[-1].response
    kinds = [i.type for i in final.output]
    assert kinds.count("web_search_call") == 12 and "code_interpreter_call" in kinds and kinds[0] == "reasoning"
    assert {i.action.type for i in final.output if i.type == "web_search_call"} == {"search", "open_page",
                                                                                    "find_in_page"}
    annotations = final.output[-1].content[0].annotations
    assert annotations and all(a.type == "url_citation" for a in annotations)
    for a in annotations:
        assert final.output_text[a.start_index:a.end_index] == f"([{a.title}]({a.url}))"
    assert final.usage.output_tokens_details.reasoning_tokens > 0
    statuses = [e.type for e in events if e.type.startswith("response.web_search_call.")]
    assert statuses[:3] == ["response.web_search_call.in_progress", "response.web_search_call.searching",
                            "response.web_search_call.completed"]


def test_resuming_an_agent_run_after_any_event_gives_the_same_events(http: httpx.Client) -> None:
    events = stream_create(http, tools=[{"type": "web_search"}, CODE, PRICE], reasoning={"summary": "auto"},
                           metadata={**OPTIONS, "mock_agent": json.dumps(SCRIPT[:5])})
    response_id = events[0].response.id
    for after in range(len(events) - 1):
        assert events[:after + 1] + stream_events(http, response_id, after) == events


def test_a_drop_inside_function_call_arguments_resumes_to_the_same_call(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o3", input="Price?", tools=[PRICE], background=True, stream=True,
                                     metadata={**OPTIONS, "mock_faults": "drop_after=6"})
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for event in stream:
            seen.append(event)
    assert seen[-1].type == "response.function_call_arguments.delta"
    rest = list(client.responses.retrieve(seen[0].response.id, stream=True, starting_after=seen[-1].sequence_number))
    final = rest[-1].response
    arguments = "".join(e.delta for e in [*seen, *rest] if e.type == "response.function_call_arguments.delta")
    assert arguments == final.output[0].arguments and json.loads(arguments)["ticker"]


def test_an_agent_run_cut_by_kill_9_continues_with_the_same_items(tmp_path: Path) -> None:
    db = tmp_path / "mock.sqlite3"
    metadata = {"mock_options": "tokens=40,tps=40,ttft=0,queue_delay=0,tool_time=0.3",
                "mock_agent": json.dumps(SCRIPT[:4] + SCRIPT[5:])}
    body = {"model": "o3", "input": "Survive", "background": True, "stream": True, "metadata": metadata,
            "tools": [{"type": "web_search"}, CODE]}
    with ServerProcess("--db", str(db)) as server, httpx.Client(base_url=server.url.removesuffix("/v1"),
                                                                timeout=10) as http:
        with http.stream("POST", "/v1/responses", json=body) as answer:
            lines = answer.iter_lines()
            before = []
            for event in strict_events(lines):
                before.append(event)
                if event.type == "response.web_search_call.searching":
                    break
        server.kill()
    with ServerProcess("--db", str(db)) as server, httpx.Client(base_url=server.url.removesuffix("/v1"),
                                                                timeout=10) as http:
        response_id = before[0].response.id
        rest = stream_events(http, response_id, before[-1].sequence_number)
        reference = stream_create(http, **{k: v for k, v in body.items() if k != "stream"})
    final = rest[-1].response
    assert [i.type for i in final.output] == [i.type for i in reference[-1].response.output]
    assert final.output_text == reference[-1].response.output_text
    assert [e.type for e in before + rest] == [e.type for e in reference]
