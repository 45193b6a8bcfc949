"""The Agent API, in the shape of Microsoft Agent Framework's: ``agent.run(...)`` with background options.

Unlike Agent Framework's Python client, every streamed update carries a continuation token with its sequence number,
a resumed stream continues exactly after it, a failed run raises :class:`RunFailed`, and every background run is
recorded in the run store so another process can resume it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Awaitable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ._client import ResponsesClient, RetryPolicy
from ._config import endpoint_for
from ._errors import ConfigurationError, StoredRunNotFound
from ._messages import follow_mode, request_input
from ._recorder import RunRecorder
from ._recording import recording_for
from ._run import BackgroundRun
from ._store import CheckpointWriter, RunRecord, RunStore, default_store, new_run_id
from ._token import ContinuationToken
from ._tool_loop import DEFAULT_MAX_ROUNDS, ToolLoop, loop_for
from ._tools import FunctionTool, as_tool
from ._updates import AgentResponse, AgentResponseUpdate

if TYPE_CHECKING:
    from .batch import Batch

__all__ = ["Agent", "AgentSession", "OpenAIResponsesClient"]

#: Option keys agent-nb understands; any other key is passed to the service as a request field.
RUN_OPTIONS = frozenset({"background", "continuation_token", "model", "instructions", "max_output_tokens",
                         "metadata", "poll_interval", "raise_on_failure", "name", "labels", "tools",
                         "max_tool_rounds", "notify", "safety_poll", "record"})


class AgentSession:
    """A conversation: each run in it continues from the previous one through ``previous_response_id``.

    ``await agent.create_session()`` and ``agent.create_session()`` both give one.
    """

    def __init__(self, previous_response_id: str | None = None) -> None:
        self.previous_response_id = previous_response_id

    def __await__(self) -> Generator[Any, None, AgentSession]:
        return self
        yield  # pragma: no cover - makes this a generator

    def __repr__(self) -> str:
        return f"AgentSession(previous_response_id={self.previous_response_id!r})"


class Agent:
    """An agent bound to a Responses endpoint, with instructions and a run store.

    Args:
        client: the API client (default: from the environment, else the bundled mock server).
        name: a label for the agent.
        instructions: system instructions sent with every run.
        model: the model (default ``$AGENT_NB_MODEL``, else ``gpt-4.1``).
        store: where background runs are recorded; default the SQLite store under ``$AGENT_NB_HOME``; ``False``
            records nothing.
        tools: functions (plain or ``@tool``) the model may call, run here between responses, and hosted tools'
            declarations such as ``{"type": "web_search"}``.
        max_tool_rounds: how many rounds of function calls one run may make (a runaway loop is stopped).
    """

    def __init__(self, client: ResponsesClient | None = None, *, name: str | None = None,
                 instructions: str | None = None, model: str | None = None,
                 store: RunStore | Literal[False] | None = None, tools: Iterable[Any] = (),
                 max_tool_rounds: int = DEFAULT_MAX_ROUNDS) -> None:
        self.client = client or ResponsesClient()
        self.name = name
        self.instructions = instructions
        self.tools = [as_tool(t) for t in tools]
        self.max_tool_rounds = max_tool_rounds
        self.model = model or os.environ.get("AGENT_NB_MODEL") or "gpt-4.1"
        self.store: RunStore | None = (default_store() if store is None else store) or None
        self._checkpoints = CheckpointWriter(self.store) if self.store is not None else None
        self._clients: dict[str, ResponsesClient] = {}  # for runs recorded at other endpoints

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model!r}, endpoint={self.client.base_url!r})"

    def create_session(self) -> AgentSession:
        """A new conversation (also awaitable: ``session = await agent.create_session()``)."""
        return AgentSession()

    # -- run ------------------------------------------------------------------------------------------------------
    @overload
    def run(self, messages: Any = None, *, stream: Literal[False] = False, session: AgentSession | None = None,
            options: Mapping[str, Any] | None = None) -> Awaitable[AgentResponse]: ...

    @overload
    def run(self, messages: Any = None, *, stream: Literal[True], session: AgentSession | None = None,
            options: Mapping[str, Any] | None = None) -> AsyncGenerator[AgentResponseUpdate, None]: ...

    def run(self, messages: Any = None, *, stream: bool = False, session: AgentSession | None = None,
            options: Mapping[str, Any] | None = None
            ) -> Awaitable[AgentResponse] | AsyncGenerator[AgentResponseUpdate, None]:
        """Run the agent, or continue a run from ``options["continuation_token"]``.

        With ``stream=False`` this is awaited and gives an :class:`AgentResponse`; with ``options={"background":
        True}`` it returns at once with a ``continuation_token`` to poll with. With ``stream=True`` it is an async
        iterator of :class:`AgentResponseUpdate`, each with a token that resumes right after it.
        """
        opts = dict(options or {})
        token = opts.pop("continuation_token", None)
        run = self._run_for(messages, session, opts, token, stream)
        if session is not None and run.response_id is not None:
            self._remember(session, run)
        if stream:
            return run.updates()
        return self._once(run, session, token is not None)

    async def _once(self, run: BackgroundRun, session: AgentSession | None, resuming: bool) -> AgentResponse:
        response = await (run.poll_once() if resuming else run.create())
        self._remember(session, run)
        return response

    @staticmethod
    def _remember(session: AgentSession | None, run: BackgroundRun) -> None:
        if session is not None and run.response_id is not None:
            session.previous_response_id = run.response_id

    def _run_for(self, messages: Any, session: AgentSession | None, opts: dict[str, Any], token: Any,
                 stream: bool) -> BackgroundRun:
        poll_interval = float(opts.pop("poll_interval", 2.0))
        raise_on_failure = bool(opts.pop("raise_on_failure", True))
        if token is not None:
            if messages is not None:
                raise ConfigurationError("Pass either messages (a new run) or a continuation_token (to continue one), "
                                         "not both.")
            return self.resume(token, poll_interval=poll_interval, raise_on_failure=raise_on_failure)
        opts.setdefault("background", False)  # as in Agent Framework: background only when asked for
        return self.start(messages, session=session, options=opts, stream=stream, poll_interval=poll_interval,
                          raise_on_failure=raise_on_failure, launch=False)

    # -- background runs --------------------------------------------------------------------------------------------
    def start(self, messages: Any, *, session: AgentSession | None = None, options: Mapping[str, Any] | None = None,
              stream: bool = True, poll_interval: float = 2.0, raise_on_failure: bool = True,
              launch: bool = True, run_id: str | None = None) -> BackgroundRun:
        """Start a background run and return its :class:`BackgroundRun`, followed in a task when ``launch``.

        ``options`` take ``background`` (default True), ``model``, ``instructions``, ``max_output_tokens``,
        ``metadata``, ``name`` and ``labels`` (stored with the run); other keys go to the service as they are.
        ``run_id`` is the id to record the run under (a batch assigns its items' ids before they start).
        """
        opts = dict(options or {})
        background = bool(opts.pop("background", True))
        max_rounds = int(opts.pop("max_tool_rounds", self.max_tool_rounds))
        name = opts.pop("name", None)
        labels = dict(opts.pop("labels", None) or {})
        notify, safety_poll = opts.pop("notify", None), float(opts.pop("safety_poll", 60.0))
        record_to = opts.pop("record", None)
        body, prompt, tools = self._request(messages, session, opts, background)
        instructions = body.get("instructions")
        functions = [t for t in tools if isinstance(t, FunctionTool)]
        loop = loop_for(functions, body, None, max_rounds=max_rounds)
        mode = follow_mode(notify, stream, background, self.store is not None and background, loop is not None)
        recorder = None
        if background and self.store is not None:
            record = RunRecord(run_id=run_id or new_run_id(), endpoint=self.client.base_url, model=body["model"],
                               prompt=prompt, instructions=instructions, name=name, labels=labels, mode=mode,
                               previous_response_id=body.get("previous_response_id"),
                               service=self.client.endpoint.kind, chain=loop.chain.to_dict() if loop else None)
            self.store.add(record)  # a store that cannot record the run is an error before anything is paid for
            recorder = self._recorder(record)
        run = BackgroundRun(self.client, recorder=recorder, create_body=body, mode=mode, poll_interval=poll_interval,
                            raise_on_failure=raise_on_failure, background=background, tool_loop=loop)
        run.safety_poll = safety_poll
        run.recording = recording_for(record_to, run.run_id)
        if session is not None:
            run.on_started = lambda started: self._remember(session, started)
        if launch:
            run.start()
        return run

    def request_body(self, messages: Any, options: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        """The create request a background run of ``messages`` sends, and its prompt text (what a batch sends)."""
        opts = dict(options or {})  # request fields only: model, instructions, tools, and what goes as it is
        body, prompt, _ = self._request(messages, None, opts, True)
        return body, prompt

    def _request(self, messages: Any, session: AgentSession | None, opts: dict[str, Any],
                 background: bool) -> tuple[dict[str, Any], str, list[Any]]:
        """The create body (taking its fields out of ``opts``), the prompt text, and the run's tools."""
        tools = [*self.tools, *(as_tool(t) for t in opts.pop("tools", None) or ())]
        prompt, body_input = request_input(messages)
        body: dict[str, Any] = {
            "model": opts.pop("model", None) or self.model,
            "input": body_input,
            "background": background,
            **({"store": True} if background else {}),
        }
        instructions = opts.pop("instructions", self.instructions)
        if instructions:
            body["instructions"] = instructions
        if session is not None and session.previous_response_id:
            body["previous_response_id"] = session.previous_response_id
        if tools:
            body["tools"] = [t.to_dict() if isinstance(t, FunctionTool) else t for t in tools]
        body.update(opts)
        return body, prompt, tools

    def resume(self, target: Any, *, stream: bool = True, poll_interval: float = 2.0,
               raise_on_failure: bool = True) -> BackgroundRun:
        """A :class:`BackgroundRun` that continues a run from a token (any form) or a stored run id.

        From a run id, the stored text comes back at once and the stream continues after the stored sequence number,
        at the endpoint the run was recorded at (with the key the environment has for it).
        From a token, the stream continues right after it; the text before it comes from the store when it has it
        there, else from a replay of the stream up to the token, so ``text`` is always the whole text. A run id of a
        run the store has as finished gives it back finished, with its stored outcome, without asking the service.
        """
        record: RunRecord | None = None
        by_run_id = isinstance(target, str) and target.startswith("run_")
        if by_run_id:
            if self.store is None:
                raise ConfigurationError("This agent has no run store, so it cannot resume a run by its id; pass the "
                                         "run's continuation token instead.")
            record = self.store.get(target)
            if record.response_id is None:
                raise StoredRunNotFound(f"Run '{target}' never reached the service (it has no response id), so there "
                                        "is nothing to resume; start it again.")
            token = ContinuationToken(record.response_id, record.sequence_number)
        else:
            token = ContinuationToken.parse(target)
            record = self.store.find(token.response_id) if self.store is not None else None
        mode = "stream" if stream else "poll"
        if record is None and self.store is not None:
            record = RunRecord(run_id=new_run_id(), endpoint=self.client.base_url, model=self.model, prompt="",
                               response_id=token.response_id, mode=mode, service=self.client.endpoint.kind)
            self.store.add(record)
        recorder = self._recorder(record) if record is not None else None
        client = self._client_for(record)
        options: dict[str, Any] = {"mode": mode, "poll_interval": poll_interval, "raise_on_failure": raise_on_failure,
                                   "tool_loop": self._loop_for(record)}
        if record is not None and record.terminal and by_run_id:
            run = BackgroundRun(client, recorder=recorder, response_id=token.response_id,
                                after=record.sequence_number, text=record.text, status=record.status,
                                items=record.items, **options)
            run.error, run.ended_at = record.error, record.updated_at
            return run
        # Pick the stream up at the furthest point, at or before the token, whose text is known here.
        after, text, items = None, "", None
        wanted = token.sequence_number
        stored = record.sequence_number if record is not None else None
        if record is not None and not record.terminal and stored is not None and wanted is not None and \
                stored <= wanted:
            after, text, items = stored, record.text, record.items
        status = record.status if record is not None and record.status in ("queued", "in_progress", "waiting") \
            else "in_progress"
        return BackgroundRun(client, recorder=recorder, response_id=token.response_id, after=after, text=text,
                             items=items, status=status, deliver_after=wanted if wanted != after else None,
                             **options)

    def _loop_for(self, record: RunRecord | None) -> ToolLoop | None:
        """The tool loop of a resumed run: its recorded chain, with this agent's functions to answer its calls."""
        functions = [t for t in self.tools if isinstance(t, FunctionTool)]
        body: dict[str, Any] = {"model": record.model if record is not None else self.model,
                                "tools": [t.to_dict() if isinstance(t, FunctionTool) else t for t in self.tools]}
        if self.instructions:
            body["instructions"] = self.instructions
        return loop_for(functions, body, record.chain if record is not None else None,
                        max_rounds=self.max_tool_rounds)

    def _client_for(self, record: RunRecord | None) -> ResponsesClient:
        """The client for the endpoint a stored run was recorded at (this agent's own, unless it was elsewhere).

        A run of the bundled mock server is resumed wherever that server listens now, starting it again (with its
        database, so with its runs) if it is not running.
        """
        if record is None:
            return self.client
        bundled = record.service == "mock" or (record.service is None and self.client.endpoint.kind == "mock"
                                                and record.endpoint == self.client.base_url)
        if not bundled and record.endpoint == self.client.base_url:
            return self.client
        endpoint = endpoint_for(record.endpoint, "mock" if bundled else record.service)
        if endpoint.base_url == self.client.base_url:
            return self.client
        client = self._clients.get(endpoint.base_url)
        if client is None:
            client = self._clients[endpoint.base_url] = ResponsesClient(endpoint=endpoint, retry=self.client.retry,
                                                                        timeout=self.client.timeout)
        return client

    def _recorder(self, record: RunRecord) -> RunRecorder:
        assert self.store is not None and self._checkpoints is not None
        return RunRecorder(self.store, record, self._checkpoints)

    def batch(self, inputs: Any, *, name: str | None = None, concurrency: int = 64, mode: str = "poll",
              max_attempts: int = 3, rate_limit: Any = None, options: Mapping[str, Any] | None = None) -> Batch:
        """Run the agent over many inputs in parallel, in the background; returns a :class:`~agent_nb.batch.Batch`
        at once (``await batch`` or ``batch.wait()`` waits for it).

        ``inputs``: prompts, lists of input items, ``(key, prompt)`` pairs, a dict of key to prompt, or a pandas
        column. Each item is an ordinary recorded run labelled with the batch; one that fails is retried up to
        ``max_attempts`` where a retry makes sense, and never stops the others. ``concurrency`` caps the runs in
        flight (a 429 narrows it for a while); ``rate_limit`` is a ``RateLimit`` of explicit budgets. ``mode`` is
        ``"poll"`` (one shared loop polls every run) or ``"stream"``. ``name`` makes it resumable: calling this
        again with the same name (after a restart, or in another process) re-attaches to it and adds only new items.
        """
        from .batch import Batch  # the batch layer sits above this one, as the notebook layer does

        return Batch.open(self, inputs, name=name, concurrency=concurrency, mode=mode, max_attempts=max_attempts,
                          rate_limit=rate_limit, options=options)

    async def cancel(self, target: Any) -> AgentResponse:
        """Cancel a run given its token (any form), response id, or stored run id."""
        if isinstance(target, BackgroundRun):
            return await target.cancel()
        if isinstance(target, str) and target.startswith("resp_"):
            target = ContinuationToken(target)
        return await self.resume(target).cancel()


class OpenAIResponsesClient:
    """Agent Framework's entry point, so its code runs with only the import line changed.

    ``OpenAIResponsesClient(model_id="o3").as_agent(name=..., instructions=...)`` gives an :class:`Agent`.
    """

    def __init__(self, model_id: str | None = None, *, api_key: str | Any | None = None, base_url: str | None = None,
                 retry: RetryPolicy | None = None, store: RunStore | Literal[False] | None = None,
                 azure_ad_token_provider: Any = None) -> None:
        self.model_id = model_id
        self.client = ResponsesClient(base_url, api_key, retry=retry, azure_ad_token_provider=azure_ad_token_provider)
        self._store = store

    def as_agent(self, *, name: str | None = None, instructions: str | None = None, tools: Iterable[Any] = (),
                 **kwargs: Any) -> Agent:
        return Agent(self.client, name=name, instructions=instructions, model=self.model_id, tools=tools,
                     store=kwargs.pop("store", self._store), **kwargs)

    create_agent = as_agent
