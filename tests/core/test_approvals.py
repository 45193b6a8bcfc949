"""Approvals: a run that waits for a person, answered now, after a restart, or refused, for the agent's functions and
for a hosted MCP server's tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_nb import Agent, ResponsesClient, RetryPolicy, RunError, SQLiteRunStore, tool
from mock_server import MockServer

RETRY = RetryPolicy(max_retries=8, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)
FAST = "tokens=12,tps=0,ttft=0,queue_delay=0,tool_time=0"
MCP = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com", "require_approval": "always"}


def options(*steps: dict[str, Any], stream: bool = True, **extra: Any) -> dict[str, Any]:
    metadata = {"mock_options": FAST}
    if steps:
        metadata["mock_agent"] = json.dumps(list(steps))
    return {"background": True, "metadata": metadata, **extra}


class Bank:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

        @tool(approval_mode="always_require")
        def transfer(amount: int, to: str) -> str:
            """Send money to someone."""
            self.sent.append((amount, to))
            return f"sent {amount} to {to}"

        self.transfer = transfer


@pytest.fixture
async def client(mock: MockServer) -> AsyncIterator[ResponsesClient]:
    client = ResponsesClient(mock.url, "sk-test", retry=RETRY)
    yield client
    await client.aclose()


PAY = ({"call": "transfer", "arguments": {"amount": 40, "to": "Bob"}}, {"answer": "Result: {output}"})


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "polled"])
async def test_a_call_that_needs_approval_waits_and_is_answered_after_a_restart(client: ResponsesClient,
                                                                               mock: MockServer, tmp_path: Path,
                                                                               stream: bool) -> None:
    bank, path = Bank(), tmp_path / "runs.sqlite3"
    agent = Agent(client, model="o3", store=SQLiteRunStore(path), tools=[bank.transfer])
    run = agent.start("Pay Bob", options=options(*PAY), stream=stream, poll_interval=0.01)
    waiting = await run.wait()
    assert (waiting.status, waiting.continuation_token, bank.sent) == ("waiting", None, [])
    (request,) = waiting.user_input_requests
    assert (request.type, request.kind, request.name, request.parse_arguments()) == (
        "function_approval_request", "function", "transfer", {"amount": 40, "to": "Bob"})
    assert SQLiteRunStore(path).get(run.run_id or "").status == "waiting"
    # A new kernel: a fresh agent and store find the request in the record and answer it.
    fresh = Agent(ResponsesClient(mock.url, "sk-test", retry=RETRY), model="o3", store=SQLiteRunStore(path),
                  tools=[bank.transfer])
    again = fresh.resume(run.run_id or "")
    assert again.status == "waiting" and [r.id for r in again.user_input_requests] == [request.id]
    again.user_input_requests[0].approve()
    done = await again.wait()
    assert (done.status, done.text, bank.sent) == ("completed", "Result: sent 40 to Bob", [(40, "Bob")])
    assert SQLiteRunStore(path).get(run.run_id or "").status == "completed"
    await fresh.client.aclose()


async def test_a_refused_call_is_not_made_and_the_model_is_told_why(client: ResponsesClient) -> None:
    bank = Bank()
    agent = Agent(client, model="o3", store=False, tools=[bank.transfer])
    run = agent.start("Pay Bob", options=options(*PAY))
    (request,) = (await run.wait()).user_input_requests
    request.reject("Bob is not a customer")
    done = await run.wait()
    assert done.text == "Result: The user did not approve this call: Bob is not a customer"
    assert bank.sent == [] and done.user_input_requests == []


async def test_updates_of_a_waiting_run_end_and_the_approved_run_goes_on_by_itself(client: ResponsesClient) -> None:
    bank = Bank()
    agent = Agent(client, model="o3", store=False, tools=[bank.transfer])
    run = agent.start("Pay Bob", options=options(*PAY), launch=False)
    first = [u async for u in run.updates()]
    assert run.status == "waiting" and first[-1].continuation_token is not None  # the last event of the response
    run.user_input_requests[0].approve()  # the run goes on in the background at once ...
    with pytest.raises(RunError, match="already being followed"):
        [u async for u in run.updates()]  # ... so a second follower would fold every event twice
    assert (await run.wait()).text == "Result: sent 40 to Bob" == run.text


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "refused"])
async def test_a_hosted_mcp_tool_waits_for_approval(client: ResponsesClient, approve: bool) -> None:
    agent = Agent(client, model="o3", store=False, tools=[MCP])
    run = agent.start("Find the docs", options=options())
    (request,) = (await run.wait()).user_input_requests
    assert (request.kind, request.server_label) == ("mcp", "docs")
    request.approve() if approve else request.reject("not now")
    done = await run.wait()
    kinds = [item["type"] for item in done.items]
    if approve:
        assert kinds == ["mcp_approval_request", "mcp_approval_response", "mcp_call", "message"]
        assert done.text.startswith(f"{request.name} was approved")
    else:
        assert kinds == ["mcp_approval_request", "mcp_approval_response", "message"]
        assert done.text.startswith(f"{request.name} was not approved (not now)")
