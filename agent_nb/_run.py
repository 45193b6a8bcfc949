"""A background run followed to its end: its state, its observers, and its record in the run store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from ._client import ResponsesClient
from ._endings import Endings
from ._errors import ConnectionLost, RunError, RunExpired, RunNotFound, StoreError
from ._following import Following
from ._items import OutputItems
from ._legs import Legs
from ._polling import Polling, output_text
from ._recorder import RunRecorder
from ._recording import RunRecording
from ._resume import ENDED_EVENT, TERMINAL_STATUSES, GaveUp, ResumableStream
from ._store import RunRecord
from ._token import ContinuationToken
from ._tool_loop import ToolLoop
from ._updates import AgentResponse, AgentResponseUpdate

__all__ = ["BackgroundRun", "Observer"]

#: Called with the run and what changed: "text", "items", "status", "reconnecting", "store" or "done".
Observer = Callable[["BackgroundRun", str], None]

_DELTA = "response.output_text.delta"
_STATUS_OF_EVENT = {
    "response.queued": "queued",
    "response.in_progress": "in_progress",
    "response.completed": "completed",
    "response.failed": "failed",
    "response.incomplete": "incomplete",
}


class BackgroundRun(Following, Polling, Endings, Legs):
    """One background response: start or resume it, stream or poll it, and watch its state change.

    Most code gets one from ``Agent.start()`` / ``Agent.resume()`` (or through ``Agent.run``). The run keeps
    ``text`` (everything received), ``status``, ``token`` (resumes exactly after the last event), ``error`` and
    ``usage``, tells its observers about every change, and keeps its record in the run store up to date.

    Streamed, ``text`` is always exactly the output of events ``0..sequence_number``: a run resumed from a token
    whose earlier text is not known here replays the stream from the last point it does know (event 0 at worst),
    folding the events up to the token quietly, and hands out updates only for the events after it
    (``deliver_after``). A store that fails is reported in ``store_error``, never raised.
    """

    def __init__(self, client: ResponsesClient, *, recorder: RunRecorder | None = None,
                 create_body: Mapping[str, Any] | None = None, response_id: str | None = None,
                 after: int | None = None, text: str = "", status: str = "starting", mode: str = "stream",
                 poll_interval: float = 2.0, raise_on_failure: bool = True, deliver_after: int | None = None,
                 background: bool = True, items: list[dict[str, Any]] | None = None,
                 tool_loop: ToolLoop | None = None) -> None:
        if mode not in ("stream", "poll", "webhook"):
            raise ValueError(f"mode must be 'stream', 'poll' or 'webhook', not {mode!r}")
        self.client = client
        self.recorder = recorder
        self._create_body = dict(create_body) if create_body is not None else None
        record = recorder.record if recorder is not None else None
        self.response_id = response_id if response_id is not None else (record.response_id if record else None)
        self.on_started: Callable[[BackgroundRun], None] | None = None
        self.sequence_number = after
        self._parts: list[str] = [text] if text else []
        self._text_cache: str | None = text
        self._text_length = len(text)
        #: Answers the calls of a response that ends with calls for the agent's tools (see ``_legs``).
        self.tool_loop = tool_loop
        self._prefix_items: list[dict[str, Any]] = []
        self._prefix_length = 0
        self._leg_end: dict[str, Any] | None = None
        #: Writes every event received (and each create's request) for replaying offline; see ``_recording``.
        self.recording: RunRecording | None = None
        self._items = OutputItems(self._split_prefix(items))
        #: Whether ``text`` is exactly the output of events 0..sequence_number (a polled snapshot's text is not).
        self._from_events = True
        self._deliver_after = deliver_after
        self.status = status
        self.mode = mode
        self.background = background
        self.poll_interval = poll_interval
        #: With mode "webhook": seconds between polls of the service while the run waits for its webhook.
        self.safety_poll = 60.0
        self.raise_on_failure = raise_on_failure
        self.error: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.response: dict[str, Any] | None = None
        self.connection_lost: ConnectionLost | None = None
        self.reconnects = 0
        self.started_at = time.time()
        self.ended_at: float | None = None
        self._observers: list[Observer] = []
        self._task: asyncio.Task[AgentResponse] | None = None

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        if self._text_cache is None:
            self._text_cache = "".join(self._parts)
            self._parts = [self._text_cache]
        return self._text_cache

    def _set_text(self, text: str) -> None:
        self._parts, self._text_cache, self._text_length = [text], text, len(text)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def token(self) -> ContinuationToken | None:
        """Resumes right after the last event received; ``None`` before the run is known, once it has ended, and
        for a response created without ``background`` (which cannot be resumed)."""
        if self.response_id is None or self.terminal or not self.background or self.status == "waiting":
            return None
        return ContinuationToken(self.response_id, self.sequence_number)

    @property
    def record(self) -> RunRecord | None:
        return self.recorder.record if self.recorder is not None else None

    @property
    def run_id(self) -> str | None:
        return self.recorder.run_id if self.recorder is not None else None

    @property
    def store_error(self) -> StoreError | None:
        """Why the run's record could not be written last time, or None: the run goes on either way."""
        return self.recorder.error if self.recorder is not None else None

    @property
    def elapsed(self) -> float:
        return (self.ended_at or time.time()) - self.started_at

    def add_observer(self, observer: Observer) -> None:
        if observer not in self._observers:
            self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        with contextlib.suppress(ValueError):
            self._observers.remove(observer)

    def _notify(self, change: str) -> None:
        for observer in list(self._observers):
            observer(self, change)

    def to_response(self) -> AgentResponse:
        return AgentResponse(text=self.text, status=self.status, response_id=self.response_id,
                             continuation_token=self.token, usage=self.usage, error=self.error, run_id=self.run_id,
                             raw=self.response, items=self.items, user_input_requests=self.user_input_requests)

    def __repr__(self) -> str:
        return (f"<BackgroundRun {self.run_id or ''} {self.response_id or '(not started)'} {self.status}, "
                f"{len(self.text)} chars>")

    # -- streaming ----------------------------------------------------------------------------------------------
    async def updates(self) -> AsyncGenerator[AgentResponseUpdate, None]:
        """Stream the run from where it stands, one update per event, reconnecting as needed.

        Raises:
            RunFailed: the run failed (unless ``raise_on_failure`` is False).
            RunNotFound: the service no longer has the run; its record is marked ``lost``.
            ConnectionLost: reconnecting failed ``max_retries`` times in a row; ``.token`` resumes.
            RunError: the run is already being followed in its task (``start()``, ``wait()``, or an approval
                answered): two followers would fold every event twice. Watch it with ``add_observer`` instead.
        """
        if self.running and asyncio.current_task() is not self._task:
            raise RunError(f"Run {self.run_id or self.response_id} is already being followed in the background "
                           "(by start(), wait() or an answered approval); await run.wait() or watch it with "
                           "run.add_observer() instead of streaming it a second time.",
                           response_id=self.response_id)
        while not (self.status == "waiting" and self.user_input_requests):  # else it waits for a person
            async with contextlib.aclosing(self._response_updates()) as updates:
                async for update in updates:
                    yield update
            if not await self._next_leg():
                return

    async def _response_updates(self) -> AsyncGenerator[AgentResponseUpdate, None]:
        """The updates of the response the run is at."""
        if self.response_id is None and self._create_body is not None and self.recording is not None:
            self.recording.request(self._create_body, self.client.base_url)
        stream = ResumableStream(self.client, self.response_id, self.sequence_number,
                                 create_body=self._create_body if self.response_id is None else None,
                                 on_reconnecting=self._reconnecting, resumable=self.background)
        self.connection_lost = None
        quiet = self._deliver_after
        try:
            async with contextlib.aclosing(stream.batches()) as batches:
                async for batch in batches:
                    for event in batch:
                        update = self._apply(event)
                        if quiet is None or update.sequence_number > quiet or self.terminal:
                            yield update
        except GaveUp as exc:
            self._gave_up(exc)
        except ConnectionLost as exc:
            self._lost(str(exc), exc.__cause__)
        except RunExpired:
            if quiet is not None and quiet > (self.sequence_number if self.sequence_number is not None else -1):
                raise  # what the caller already has is not known here, so the rest cannot be told apart from it
            # The stream can no longer be resumed; the Response object still says how the run ends.
            yield await self._finish_from_snapshots()
        except RunNotFound as exc:
            self._gone(exc)
        finally:
            if not self.terminal:  # a finished run's final state was written once, in _set_status
                self._checkpoint(now=True)

    def _reconnecting(self, reason: str, attempt: int) -> None:
        self.reconnects += 1
        self._notify("reconnecting")

    def _apply(self, event: dict[str, Any]) -> AgentResponseUpdate:
        """Fold one event into the run's state; returns the update to hand out."""
        if self.recording is not None:
            self.recording.event(event, self.response_id)
        kind = event.get("type", "")
        seq = event.get("sequence_number")
        if isinstance(seq, int):
            self.sequence_number = seq
        if kind == _DELTA:
            delta = event.get("delta") or ""
            self._parts.append(delta)
            self._text_cache = None
            self._text_length += len(delta)
            if self.recorder is not None and self.recorder.due():
                self._checkpoint()
            if self._observers:
                self._notify("text")
            return AgentResponseUpdate(delta, self.sequence_number or 0, self.status, self.response_id, kind,
                                       resumable=self.background, raw=event)
        item = self._items.apply(event, self._text_length)
        response = event.get("response")
        if isinstance(response, dict):
            self.response = response
            if self.response_id is None and isinstance(response.get("id"), str):
                self.response_id = response["id"]
                self._record_started(response)
        status = _STATUS_OF_EVENT.get(kind)
        if kind == "response.created" and isinstance(response, dict):
            status = response.get("status") or "queued"
        elif kind == ENDED_EVENT and isinstance(response, dict):
            status = response.get("status")
        elif kind == "error":
            status = "failed"
            self.error = {"code": event.get("code"), "message": event.get("message")}
        if status is not None and status != self.status:
            self._set_status(status, response if isinstance(response, dict) else None)
        terminal = self.terminal
        update = AgentResponseUpdate("", self.sequence_number or 0, self.status, self.response_id, kind, terminal,
                                     self.background, raw=event, item=item)
        if item is not None and self._observers:
            self._notify("items")
        if terminal and self.status == "failed" and self.raise_on_failure:
            raise self.failure()
        return update

    def _set_status(self, status: str, response: dict[str, Any] | None) -> None:
        if status == "completed" and self.tool_loop is not None and self.tool_loop.continues(response):
            self._leg_end = response  # a round of calls: the run goes on in the follow-up response
            return
        self.status = status
        if response is not None:
            if response.get("usage"):
                self.usage = response["usage"]
            if response.get("error"):
                self.error = response["error"]
        if status in TERMINAL_STATUSES:
            self.ended_at = time.time()
            final = output_text(response)
            before, mine = self.text[:self._prefix_length], self.text[self._prefix_length:]
            if final is not None and (final.startswith(mine) or final.endswith(mine)):
                self._set_text(before + final)  # the service's text is the whole text of its response
            if response is not None and isinstance(response.get("output"), list):
                self._items.replace(response["output"], self.text, start=self._prefix_length)  # and its items
            if self.recorder is not None:
                # Streamed to its end, the last event number goes with the final text; polled, none is known.
                self.recorder.finished(status, self.text, self.sequence_number if self._from_events else None,
                                       self.error, items=self._stored_items())
        elif self._from_events:
            self._checkpoint(now=True)
        elif self.recorder is not None:
            self.recorder.status(status)
        self._notify("status")
        self._notify_store()

    def _record_started(self, response: Mapping[str, Any]) -> None:
        if self.on_started is not None:
            self.on_started(self)
        status = response.get("status") or self.status
        if self.recorder is not None and not self._leg_started(self.response_id, status):
            self.recorder.started(self.response_id, status)
            self._notify_store()

    def _checkpoint(self, now: bool = False) -> None:
        """Note the run's position in the store, if its text is exactly the output of the events so far."""
        if self.recorder is None or self.sequence_number is None or not self._from_events:
            return
        before = self.recorder.error
        self.recorder.progress(self.sequence_number, self.text, self.status, now=now, items=self._stored_items(),
                               response_id=self.response_id)
        if self.recorder.error is not before:
            self._notify("store")

    def _notify_store(self) -> None:
        if self.recorder is not None and self.recorder.error is not None:
            self._notify("store")
