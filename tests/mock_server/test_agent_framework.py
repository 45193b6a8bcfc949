"""Microsoft Agent Framework's Python client (``OpenAIChatClient``, the Responses API) against the mock, unchanged.

These tests pin down how Agent Framework 1.23 / agent-framework-openai 1.17 behaves against the server: its
continuation token is ``{"response_id"}`` only, a resumed stream is a full replay from event 0, a follow-up turn uses
``previous_response_id``, and a failed background response raises nothing. Per-response mock settings travel in
``options={"metadata": {...}}``, which Agent Framework passes to ``responses.create`` as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import openai
import pytest
from agent_framework import Agent, AgentResponse, AgentResponseUpdate, AgentSession, tool
from agent_framework.exceptions import ChatClientException
from agent_framework.openai import OpenAIChatClient

from mock_server import MockServer

MODEL = "o3"
API_KEY = "test-key"
INSTRUCTIONS = "You are a concise market analyst."
POLL_INTERVAL = 0.02
TIMEOUT = 15.0


class Recorder:
    """Every HTTP exchange the openai SDK under Agent Framework makes: (method, path, query, status)."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, str, int]] = []

    async def hook(self, response: httpx.Response) -> None:
        request = response.request
        self.exchanges.append((request.method, request.url.path, request.url.query.decode(), response.status_code))

    def statuses(self, method: str, path_prefix: str = "/v1/responses") -> list[int]:
        return [s for m, p, _, s in self.exchanges if m == method and p.startswith(path_prefix)]


@contextlib.asynccontextmanager
async def af_client(server: MockServer, recorder: Recorder | None = None) -> AsyncIterator[OpenAIChatClient]:
    """An ``OpenAIChatClient`` pointed at ``server``.

    Without a recorder it is built the documented way (``model``, ``base_url``, ``api_key``); with one, through the
    ``async_client`` argument, an ``openai.AsyncOpenAI`` whose httpx client records every exchange.
    """
    if recorder is None:
        client = OpenAIChatClient(model=MODEL, base_url=server.url, api_key=API_KEY)
    else:
        http_client = httpx.AsyncClient(event_hooks={"response": [recorder.hook]}, timeout=30)
        sdk = openai.AsyncOpenAI(base_url=server.url, api_key=API_KEY, http_client=http_client)
        client = OpenAIChatClient(model=MODEL, async_client=sdk)
    try:
        yield client
    finally:
        await client.client.close()


def make_agent(client: OpenAIChatClient) -> Agent[Any]:
    return client.as_agent(name="analyst", instructions=INSTRUCTIONS)


async def stored(server: MockServer, response_id: str, suffix: str = "") -> dict[str, Any]:
    """The mock's own record of a response (``GET /v1/responses/{id}``), bypassing Agent Framework."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{server.url}/responses/{response_id}{suffix}",
                                headers={"Authorization": f"Bearer {API_KEY}"})
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


def output_text(body: dict[str, Any]) -> str:
    return "".join(part["text"] for item in body["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")


def openai_response(response: AgentResponse[Any]) -> openai.types.responses.Response:
    """The SDK ``Response`` under an ``AgentResponse`` (AgentResponse -> ChatResponse -> Response)."""
    raw = response.raw_representation.raw_representation  # type: ignore[union-attr]
    assert isinstance(raw, openai.types.responses.Response)
    return raw


def event_of(update: AgentResponseUpdate) -> Any:
    """The SDK stream event under an ``AgentResponseUpdate`` (AgentResponseUpdate -> ChatResponseUpdate -> event)."""
    return update.raw_representation.raw_representation  # type: ignore[union-attr]


def delta_text(updates: list[AgentResponseUpdate]) -> str:
    """The text of the ``append`` contents, i.e. the deltas.

    Agent Framework also yields ``response.output_text.done`` as a ``replace`` content holding the whole text, so the
    plain concatenation of ``update.text`` is the text twice; its final response merges them correctly.
    """
    return "".join(c.text or "" for u in updates for c in u.contents
                   if c.type == "text" and c.merge_mode == "append")


async def poll_to_completion(agent: Agent[Any], session: AgentSession,
                             response: AgentResponse[Any]) -> list[AgentResponse[Any]]:
    """Agent Framework's documented polling loop; returns every response seen, the last one terminal."""
    seen = [response]
    deadline = time.monotonic() + TIMEOUT
    while response.continuation_token is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the background response did not finish within {TIMEOUT:g}s")
        await asyncio.sleep(POLL_INTERVAL)
        response = await agent.run(session=session, options={"continuation_token": response.continuation_token})
        seen.append(response)
    return seen


# --- 1. background create, then poll -----------------------------------------------------------------------------


async def test_background_run_polls_with_continuation_token_to_the_stored_text(mock: MockServer) -> None:
    reply = "Background mode works: the agent polled this reply to completion."
    async with af_client(mock) as client:
        agent = make_agent(client)
        session = agent.create_session()
        first = await agent.run("Write a market analysis.", session=session, options={
            "background": True,
            "metadata": {"mock_reply": reply, "mock_options": "queue_delay=0.2"},
        })
        # The POST answers at once with a queued response: no text yet, and a token naming the response.
        assert first.continuation_token is not None
        assert first.continuation_token["response_id"] == first.response_id
        assert openai_response(first).status == "queued"
        assert first.text == ""

        seen = await poll_to_completion(agent, session, first)

    final = seen[-1]
    assert len(seen) >= 2
    assert all(r.continuation_token == first.continuation_token for r in seen[:-1])
    assert all(r.text == "" for r in seen[:-1])
    assert final.continuation_token is None
    assert final.response_id == first.response_id
    assert openai_response(final).status == "completed"

    body = await stored(mock, first.response_id)  # type: ignore[arg-type]
    assert body["status"] == "completed" and body["background"] is True
    assert body["metadata"]["mock_reply"] == reply  # the metadata reached the server unchanged
    assert final.text == output_text(body) == reply


# --- 2. background streaming, interrupted and resumed --------------------------------------------------------------


async def test_background_stream_resumed_with_continuation_token_replays_the_full_text(mock: MockServer) -> None:
    recorder = Recorder()
    async with af_client(mock, recorder) as client:
        agent = make_agent(client)
        session = agent.create_session()
        # Paced (30 deltas at 50/s) so the first connection is abandoned while the response is still generating.
        async with agent.run("Write a market analysis.", session=session, stream=True, options={
            "background": True, "metadata": {"mock_options": "tokens=30,tps=50"},
        }) as stream:
            async for update in stream:
                first = update
                break
        token = first.continuation_token
        assert token is not None  # only response.created / response.in_progress updates carry one
        assert event_of(first).type == "response.created"
        response_id = token["response_id"]

        resumed: list[AgentResponseUpdate] = []
        stream = agent.run(session=session, stream=True, options={"continuation_token": token})
        async for update in stream:
            resumed.append(update)
        final = await stream.get_final_response()

    body = await stored(mock, response_id)
    text = output_text(body)
    assert body["status"] == "completed" and text

    # Agent Framework sends no starting_after, so the mock replays from event 0.
    resume_requests = [(q, s) for m, p, q, s in recorder.exchanges if m == "GET" and p.endswith(response_id)]
    assert len(resume_requests) == 1
    query, status = resume_requests[0]
    assert status == 200 and "stream=true" in query and "starting_after" not in query
    sequence = [event_of(u).sequence_number for u in resumed]
    assert sequence == list(range(len(sequence)))
    assert event_of(resumed[0]).type == "response.created"
    assert event_of(resumed[-1]).type == "response.completed"

    assert delta_text(resumed) == text
    assert "".join(u.text for u in resumed) == text + text  # the deltas, then output_text.done's whole text
    assert final.text == text
    assert final.continuation_token is None


async def test_dropped_background_stream_raises_and_the_token_resumes_it(mock: MockServer) -> None:
    async with af_client(mock) as client:
        agent = make_agent(client)
        session = agent.create_session()
        seen: list[AgentResponseUpdate] = []
        stream = agent.run("Write a market analysis.", session=session, stream=True, options={
            "background": True, "metadata": {"mock_faults": "drop_after=10"},
        })
        with pytest.raises(ChatClientException) as raised:
            async for update in stream:
                seen.append(update)
        # Agent Framework does not resume by itself: the dropped connection surfaces as an SDK connection error.
        assert isinstance(raised.value.__cause__, openai.APIConnectionError)
        assert len(seen) == 10
        tokens = [u.continuation_token for u in seen if u.continuation_token is not None]
        assert tokens and all(t == tokens[0] for t in tokens)

        resumed = agent.run(session=session, stream=True, options={"continuation_token": tokens[0]})
        updates = [update async for update in resumed]
        final = await resumed.get_final_response()

    body = await stored(mock, tokens[0]["response_id"])
    assert body["status"] == "completed"
    assert delta_text(updates) == final.text == output_text(body) != ""


# --- 3. a follow-up turn in the same session ------------------------------------------------------------------------


async def test_follow_up_turn_in_session_sends_previous_response_id(mock: MockServer) -> None:
    async with af_client(mock) as client:
        agent = make_agent(client)
        session = agent.create_session()
        first = await agent.run("Write a market analysis.", session=session,
                                options={"background": True, "metadata": {"mock_reply": "First answer."}})
        first = (await poll_to_completion(agent, session, first))[-1]
        assert first.text == "First answer."
        assert session.service_session_id == first.response_id

        second = await agent.run("And the risks?", session=session)
        assert second.response_id is not None and second.response_id != first.response_id
        assert session.service_session_id == second.response_id

    body = await stored(mock, second.response_id)
    assert body["previous_response_id"] == first.response_id
    assert body["status"] == "completed" and second.text == output_text(body) != ""
    # With the history on the server, Agent Framework sends only the new user message.
    items = await stored(mock, second.response_id, "/input_items")
    assert [(i["role"], i["content"][0]["text"]) for i in items["data"]] == [("user", "And the risks?")]


# --- 4. faults Agent Framework meets unchanged ---------------------------------------------------------------------


@pytest.mark.parametrize(("faults", "status"), [
    ("http_429=1,retry_after=0.01", 429),
    ("http_500=1", 500),
    ("http_503=1,retry_after=0.01", 503),
])
async def test_transient_http_error_on_create_is_retried_by_the_sdk(fresh_mock: MockServer, faults: str,
                                                                    status: int) -> None:
    recorder = Recorder()
    fresh_mock.set_faults(faults)
    async with af_client(fresh_mock, recorder) as client:
        response = await make_agent(client).run("Hello")
    assert recorder.statuses("POST") == [status, 200]
    body = await stored(fresh_mock, response.response_id)  # type: ignore[arg-type]
    assert response.text == output_text(body) != ""


async def test_rate_limited_poll_is_retried_by_the_sdk(fresh_mock: MockServer) -> None:
    recorder = Recorder()
    async with af_client(fresh_mock, recorder) as client:
        agent = make_agent(client)
        session = agent.create_session()
        first = await agent.run("Write a market analysis.", session=session, options={"background": True})
        fresh_mock.set_faults("http_429=1,retry_after=0.01")  # the next request of any kind: the first poll
        final = (await poll_to_completion(agent, session, first))[-1]
    polls = recorder.statuses("GET")
    assert polls[0] == 429 and polls[1:] and all(s == 200 for s in polls[1:])
    body = await stored(fresh_mock, first.response_id)  # type: ignore[arg-type]
    assert final.text == output_text(body) != ""


async def test_rate_limit_outlasting_sdk_retries_raises_chat_client_exception(fresh_mock: MockServer) -> None:
    recorder = Recorder()
    fresh_mock.set_faults("http_429=3,retry_after=0.01")
    async with af_client(fresh_mock, recorder) as client:
        with pytest.raises(ChatClientException) as raised:
            await make_agent(client).run("Hello")
    assert isinstance(raised.value.__cause__, openai.RateLimitError)
    assert recorder.statuses("POST") == [429, 429, 429]  # one try and the SDK's two retries


async def test_failed_background_response_raises_nothing_when_polled(fresh_mock: MockServer) -> None:
    prompt = "Write a market analysis."
    fresh_mock.set_faults("fail_at=8")  # events 5-7 are deltas; event 8 is response.failed
    async with af_client(fresh_mock) as client:
        agent = make_agent(client)
        session = agent.create_session()
        first = await agent.run(prompt, session=session, options={"background": True})
        final = (await poll_to_completion(agent, session, first))[-1]  # no exception
        fresh_mock.clear_faults()
        healthy = await make_agent(client).run(prompt)

    body = await stored(fresh_mock, first.response_id)  # type: ignore[arg-type]
    assert body["status"] == "failed" and body["error"]["code"] == "server_error"
    raw = openai_response(final)
    assert raw.status == "failed" and raw.error is not None and raw.error.code == "server_error"
    # The only signs of failure are on the raw response: no continuation token, no finish reason, partial text.
    assert final.continuation_token is None
    assert final.finish_reason is None
    assert final.text == output_text(body)
    assert final.text and healthy.text.startswith(final.text) and len(healthy.text) > len(final.text)


async def test_failed_background_stream_raises_nothing(fresh_mock: MockServer) -> None:
    fresh_mock.set_faults("fail_at=8")
    async with af_client(fresh_mock) as client:
        stream = make_agent(client).run("Write a market analysis.", stream=True, options={"background": True})
        updates = [update async for update in stream]  # no exception
        final = await stream.get_final_response()

    last = event_of(updates[-1])
    assert last.type == "response.failed"
    body = await stored(fresh_mock, last.response.id)
    assert body["status"] == "failed"
    assert [event_of(u).sequence_number for u in updates] == list(range(9))
    assert final.text == delta_text(updates) == output_text(body) != ""
    assert final.continuation_token is None


# --- 5. a plain run needs no mock settings -------------------------------------------------------------------------


async def test_plain_run_returns_the_text_without_mock_metadata_or_headers(mock: MockServer) -> None:
    async with af_client(mock) as client:
        response = await make_agent(client).run("Hello")
    assert response.continuation_token is None
    assert response.text.startswith("## Notes on Hello")  # the mock's generated reply names the prompt
    body = await stored(mock, response.response_id)  # type: ignore[arg-type]
    assert body["status"] == "completed" and body["background"] is False
    assert not body["metadata"]
    assert body["instructions"] == INSTRUCTIONS
    assert response.text == output_text(body)


# --- 6. Agent Framework's own tool loop ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "background", "stream"])
async def test_agent_framework_completes_its_function_tool_loop(mock: MockServer, mode: str) -> None:
    calls: list[str] = []

    @tool(description="The latest price of a stock.")
    def get_price(ticker: Annotated[str, "The ticker symbol, such as MSFT."]) -> str:
        calls.append(ticker)
        return f"{ticker} trades at 412.30 USD"

    metadata = {"mock_options": "tokens=20,tps=0,ttft=0,queue_delay=0,tool_time=0"}
    async with af_client(mock) as client:
        agent = client.as_agent(name="analyst", instructions=INSTRUCTIONS, tools=[get_price])
        if mode == "stream":
            updates = [u async for u in agent.run("What is MSFT at?", stream=True, options={"metadata": metadata})]
            text = delta_text(updates)
        else:
            session = agent.create_session()
            options: dict[str, Any] = {"metadata": metadata, "background": mode == "background"}
            response = await agent.run("What is MSFT at?", session=session, options=options)
            deadline = time.monotonic() + TIMEOUT
            while response.continuation_token is not None:
                assert time.monotonic() < deadline, "the background tool loop did not finish"
                await asyncio.sleep(POLL_INTERVAL)
                response = await agent.run(session=session, options={
                    **options, "continuation_token": response.continuation_token})
            text = response.text
    # The mock called the declared function once, with schema-valid arguments, and answered with its output.
    assert len(calls) == 1 and calls[0]
    assert text.startswith(f"Using get_price: {calls[0]} trades at 412.30 USD")
