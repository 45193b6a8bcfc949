"""The responses held by one server: creating, finding, expiring and restoring them."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

from .answer import answer_deltas
from .config import ServerConfig
from .errors import APIError, not_found
from .faults import FaultSpec
from .generation import GenerationOptions, conversation_seed
from .http_faults import HTTPFaults
from .legs import Leg, plan_this_leg
from .persistence import PersistenceError, SQLitePersistence
from .records import ResponseRecord, new_id
from .replay import ReplayRun
from .runs import Run, plan_steps
from .validation import CreateParams, item_text
from .webhooks import WebhookFaults, WebhookSender


class ResponseService:
    """All responses of one server, in memory and (with ``config.db``) in SQLite."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = config.faults.without_http_errors()
        self.options = config.options
        self.runs: dict[str, Run] = {}
        self.http_faults = HTTPFaults(config.faults, tracked_requests=config.limits.tracked_requests,
                                      seed=config.options.seed)
        self.creates = 0  # responses created since start (every accepted create, stored or not)
        self._persistence = SQLitePersistence(config.db) if config.db else None
        self._sweeper: asyncio.Task[None] | None = None
        self._tickets: dict[str, int] = {}  # the last write of each response's record
        self.webhooks = WebhookSender(urls=list(config.webhook_urls), secret=config.webhook_secret,
                                      faults=WebhookFaults.parse(config.webhook_faults, param="--webhook-faults"))

    # -- life cycle ---------------------------------------------------------------------------------------------
    async def startup(self) -> None:
        if self._persistence is not None:
            self._restore(self._persistence)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for run in list(self.runs.values()):
            await run.stop()
        await self.webhooks.close()
        if self._persistence is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._persistence.close)

    def set_faults(self, spec: FaultSpec) -> None:
        """Replace the server-wide faults; HTTP-error counts start again."""
        self.faults = spec.without_http_errors()
        self.http_faults.set(spec)

    def server_faults(self) -> FaultSpec:
        return self.faults.merged(self.http_faults.spec())

    def check_http_faults(self, identity: bytes, header: FaultSpec | None, response_id: str | None) -> None:
        """Raise the injected HTTP error this request should get, if any (see :mod:`mock_server.http_faults`)."""
        self.http_faults.check(identity, header, None if response_id is None else self.runs.get(response_id))

    # -- creating -----------------------------------------------------------------------------------------------
    def create(self, params: CreateParams, header_faults: FaultSpec) -> Run:
        faults = self.faults.merged(header_faults.without_http_errors()).merged(
            FaultSpec.parse(params.metadata.get("mock_faults"), param="metadata.mock_faults"))
        options = GenerationOptions.parse(params.metadata.get("mock_options"), self.options,
                                          param="metadata.mock_options")
        if options.tokens > self.config.limits.max_tokens:
            raise APIError(400, f"Invalid 'metadata.mock_options': tokens={options.tokens} is more than this mock "
                           f"server generates ({self.config.limits.max_tokens:,} deltas; start it with --max-tokens "
                           "to change that).", param="metadata.mock_options", code="invalid_value")
        previous = self._previous(params)
        conversation = self._conversation(params, previous)
        prompt = next((item_text(i) for i in reversed(params.input_items) if i.get("role") == "user"), "")
        scripted = params.metadata.get("mock_reply")
        if scripted is None and self.config.script is not None:
            scripted = self.config.script.reply_for(prompt)
        leg = Leg(None, 0, []) if self.config.replay is not None else plan_this_leg(  # a replay is recorded
            model=params.model, agent=params.agent, input_items=params.input_items, previous=previous,
            metadata_script=params.metadata.get("mock_agent"),
            script_for_prompt=self.config.script.agent_for(prompt) if self.config.script is not None else None,
            prompt=prompt, rng=random.Random(conversation_seed(options.seed, ["agent", *conversation])),
            profile=options.profile)
        record = ResponseRecord(
            id=new_id("resp"),
            model=params.model,
            created_at=int(time.time()),
            background=params.background,
            store=params.store,
            stream=params.stream,
            input_items=params.input_items,
            conversation=conversation,
            instructions=params.instructions,
            metadata=params.metadata,
            previous_response_id=params.previous_response_id,
            max_output_tokens=params.max_output_tokens,
            options=_options_string(options),
            faults=str(faults),
            scripted=scripted,
            status="queued" if params.background else "in_progress",
            tools=params.agent.tools,
            tool_choice=params.agent.tool_choice,
            parallel_tool_calls=params.agent.parallel_tool_calls,
            reasoning=params.agent.reasoning,
            agent_script=leg.agent_script,
            leg=leg.number,
            trajectory=leg.trajectory,
        )
        if self.config.replay is not None:
            recording = self.config.replay.match(params.model, params.input_items)
            run: Run = ReplayRun(record, recording, self.config.replay.speed, faults, options,
                                 on_record=self._save if record.store else None)
        else:
            run = self._build_run(record, faults, options)
        if params.store:
            self.runs[record.id] = run
            self._save(run)
        run.start()
        return run

    def _previous(self, params: CreateParams) -> ResponseRecord | None:
        if params.previous_response_id is None:
            return None
        previous = self.runs.get(params.previous_response_id)
        if previous is None:
            raise APIError(404, f"Previous response with id '{params.previous_response_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        if not previous.finished:
            raise APIError(400, f"Previous response with id '{params.previous_response_id}' is still "
                           f"{previous.record.status}; wait until it has finished.",
                           param="previous_response_id", code="previous_response_in_progress")
        previous.sync_text()
        return previous.record

    @staticmethod
    def _conversation(params: CreateParams, previous: ResponseRecord | None) -> list[str]:
        history: list[str] = []
        if previous is not None:
            history = [*previous.conversation, *(f"{i['type']}: {item_text(i)}" for i in previous.output_items),
                       f"assistant: {previous.text}"]
        if params.instructions:
            history.append(f"instructions: {params.instructions}")
        return history + [f"{i.get('role', i.get('type'))}: {item_text(i)}" for i in params.input_items]

    def _build_run(self, record: ResponseRecord, faults: FaultSpec | None = None,
                   options: GenerationOptions | None = None) -> Run:
        faults = faults if faults is not None else FaultSpec.parse(record.faults)
        options = options if options is not None else GenerationOptions.parse(record.options)
        deltas, annotations = answer_deltas(record, options)
        steps = plan_steps(record, options, faults, deltas, annotations)
        persist = self._persistence
        on_event = None if persist is None else (
            lambda run, seq, kind, data: persist.save_event(run.record.id, seq, kind, data))
        return Run(record, steps, faults, options, on_event=on_event if record.store else None,
                   on_record=self._save if record.store else None, annotations=annotations)

    def _save(self, run: Run) -> None:
        record = run.record
        if record.terminal and record.background and not run.announced:
            run.announced = True
            self.webhooks.notify(record.id, record.status)
        if self._persistence is not None and not isinstance(run, ReplayRun):  # a replay is served, not kept
            run.sync_text()
            self._tickets[run.record.id] = self._persistence.save_record(run.record.to_dict(), time.time())

    async def saved(self, run: Run, *, what: str) -> None:
        """Return once the response's record, as last written, is committed to ``--db`` (at once without one).

        Raises a 503 naming the failure if it could not be saved: the server never acknowledges a create, a cancel
        or a delete that would not survive a crash.
        """
        ticket = self._tickets.get(run.record.id)
        if self._persistence is None or ticket is None:
            return  # nothing to save, or nothing written since it was loaded from the database
        try:
            await self._persistence.wait(ticket)
        except PersistenceError as exc:
            raise APIError(503, f"The mock server could not {what}: {exc}. Nothing was acknowledged; retry once the "
                           "database is writable.", type="server_error") from None

    async def create_saved(self, params: CreateParams, header_faults: FaultSpec) -> Run:
        """:meth:`create`, answered only once the new response is durable; if it cannot be, it is forgotten."""
        run = self.create(params, header_faults)
        try:
            await self.saved(run, what=f"save the new response {run.record.id}")
        except APIError:
            self.delete(run.record.id)
            raise
        self.creates += 1
        return run

    def _restore(self, persistence: SQLitePersistence) -> None:
        loaded, persistence.loaded = persistence.loaded, []
        for data, frames in loaded:
            try:
                self._restore_one(data, frames)
            except (APIError, TypeError, ValueError, KeyError, IndexError) as exc:
                print(f"mock_server: skipping stored response {data.get('id')}: it cannot be restored ({exc}).",
                      file=sys.stderr, flush=True)

    def _restore_one(self, data: dict[str, Any], frames: list[bytes]) -> None:
        record = ResponseRecord.from_dict(data)
        if record.terminal:
            run = self._build_run(record)
            run.frames = frames
        else:
            fresh = ResponseRecord.from_dict({**data, "text": "", "output_tokens": 0, "item_status": None,
                                              "output_items": [], "annotations": [], "reasoning_tokens": 0,
                                              "status": "queued" if record.background else "in_progress"})
            run = self._build_run(fresh)
            run.replay_silently(frames)
            if not record.background:
                # A foreground response dies with its connection, and the connection died with the server.
                run.cancel()
            elif not run.finished:
                run.start(from_step=len(frames))
        self.runs[record.id] = run

    # -- finding ------------------------------------------------------------------------------------------------
    def get(self, response_id: str) -> Run:
        run = self.runs.get(response_id)
        if run is None or self._expired(run, self.config.poll_retention):
            if run is not None:
                self.delete(response_id)
            raise not_found(response_id)
        return run

    def check_streamable(self, run: Run) -> None:
        if not run.record.background:
            raise APIError(400, "This response cannot be streamed because it was not created with background=true.",
                           param="stream")
        if run.faults.expire_stream or self._expired(run, self.config.stream_retention):
            minutes = self.config.stream_retention / 60
            raise APIError(400, f"Response '{run.record.id}' can no longer be streamed because it is more than "
                           f"{minutes:g} minutes old.", param="stream", code=None)

    @staticmethod
    def _expired(run: Run, retention: float) -> bool:
        ended = run.record.ended_at
        return ended is not None and time.time() - ended > retention

    def delete(self, response_id: str) -> int | None:
        """Forget a response (its streams end at once); returns the ticket of its deletion in ``--db``."""
        run = self.runs.pop(response_id, None)
        self._tickets.pop(response_id, None)
        if run is not None:
            run.discard()
        return self._persistence.delete(response_id) if self._persistence is not None else None

    async def delete_saved(self, response_id: str) -> None:
        ticket = self.delete(response_id)
        if ticket is not None and self._persistence is not None:
            try:
                await self._persistence.wait(ticket)
            except PersistenceError as exc:
                raise APIError(503, f"The mock server could not delete {response_id} from its database: {exc}.",
                               type="server_error") from None

    async def _sweep_forever(self) -> None:
        interval = max(0.5, min(30.0, self.config.poll_retention / 4))
        while True:
            await asyncio.sleep(interval)
            for response_id, run in list(self.runs.items()):
                if self._expired(run, self.config.poll_retention):
                    self.delete(response_id)

    def stats(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for run in self.runs.values():
            statuses[run.record.status] = statuses.get(run.record.status, 0) + 1
        stats: dict[str, Any] = {"responses": len(self.runs), "creates": self.creates, "statuses": statuses}
        if self._persistence is not None:
            stats["persistence"] = self._persistence.health
        return stats


def _options_string(options: GenerationOptions) -> str:
    return ",".join(f"{k}={v}" for k, v in vars(options).items())
