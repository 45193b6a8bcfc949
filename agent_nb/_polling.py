"""Following a background run by polling: create without a stream, ``GET`` its state, absorb snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from ._errors import RunNotFound, StoreError
from ._items import OutputItems
from ._resume import ENDED_EVENT
from ._updates import AgentResponse, AgentResponseUpdate

if TYPE_CHECKING:
    from ._client import ResponsesClient
    from ._errors import RunFailed
    from ._recorder import RunRecorder
    from ._store import RunRecord

__all__ = ["Polling", "output_text"]

_STORE_CHECK = 0.05  # seconds between looks at the store while a run waits for its webhook


def output_text(response: Mapping[str, Any] | None) -> str | None:
    """The concatenated ``output_text`` parts of a Response object."""
    if not response:
        return None
    parts = [
        content.get("text", "")
        for item in response.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for content in item.get("content") or []
        if isinstance(content, dict) and content.get("type") == "output_text"
    ]
    return "".join(parts) if parts else None


class Polling:
    """The polling half of ``BackgroundRun``: what a run does when it follows its state by ``GET``."""

    if TYPE_CHECKING:  # what BackgroundRun provides
        client: ResponsesClient
        _create_body: dict[str, Any] | None
        response: dict[str, Any] | None
        response_id: str | None
        status: str
        sequence_number: int | None
        poll_interval: float
        raise_on_failure: bool
        _from_events: bool
        _items: OutputItems
        _prefix_length: int
        _leg_end: dict[str, Any] | None
        recorder: RunRecorder | None
        error: dict[str, Any] | None
        ended_at: float | None
        safety_poll: float

        @property
        def text(self) -> str: ...
        @property
        def terminal(self) -> bool: ...
        def _set_text(self, text: str) -> None: ...
        async def _next_leg(self) -> bool: ...
        def _record_started(self, response: Mapping[str, Any]) -> None: ...
        def _gone(self, exc: RunNotFound) -> NoReturn: ...
        def _notify(self, change: str) -> None: ...
        def _set_status(self, status: str, response: dict[str, Any] | None) -> None: ...
        def failure(self) -> RunFailed: ...
        def to_response(self) -> AgentResponse: ...

    # -- polling --------------------------------------------------------------------------------------------------
    async def create(self) -> AgentResponse:
        """Start the run without streaming (``background: true``); returns at once with its first state."""
        assert self._create_body is not None
        response = await self.client.create({**self._create_body, "stream": False})
        self.response = response
        self.response_id = response.get("id")
        self._record_started(response)
        self._absorb_snapshot(response)
        if self.status == "failed" and self.raise_on_failure:
            raise self.failure()
        if await self._next_leg():  # a round of calls answered at once: follow the response that goes on
            return await self.create()
        return self.to_response()

    async def poll_once(self) -> AgentResponse:
        """One ``GET``: the run's state now (raises RunFailed on failure unless told not to)."""
        assert self.response_id is not None
        try:
            snapshot = await self.client.retrieve(self.response_id)
        except RunNotFound as exc:
            self._gone(exc)
        self._absorb_snapshot(snapshot)
        if self.status == "failed" and self.raise_on_failure:
            raise self.failure()
        if await self._next_leg():  # the response was a round of calls: the run goes on in a new one
            return await self.create()
        return self.to_response()

    def _absorb_snapshot(self, response: dict[str, Any]) -> None:
        self.response = response
        mine = output_text(response)
        text = None if mine is None else self.text[:self._prefix_length] + mine
        if text is not None and len(text) >= len(self.text) and text != self.text:
            self._set_text(text)
            self._from_events = False  # the snapshot's text belongs to no known event number
            self._notify("text")
        if isinstance(response.get("output"), list) and response["output"]:
            self._items.replace(response["output"], self.text, start=self._prefix_length)
            self._from_events = False
            self._notify("items")
        status = response.get("status")
        if isinstance(status, str) and status != self.status:
            self._set_status(status, response)

    async def _poll_to_end(self) -> None:
        if self.response_id is None:
            await self.create()
        while not self.terminal and self.status != "waiting":
            await asyncio.sleep(self.poll_interval)
            await self.poll_once()

    async def _webhook_to_end(self) -> None:
        """Wait for the run's outcome in the store, where a webhook receiver records it; poll the service only every
        ``safety_poll`` seconds, in case a webhook never comes."""
        if self.response_id is None:
            await self.create()
        polled = time.monotonic()
        while not self.terminal and self.status != "waiting":
            await asyncio.sleep(_STORE_CHECK)
            record = self._stored()
            if record is not None and record.terminal:
                self._absorb_record(record)
                return
            if time.monotonic() - polled >= self.safety_poll:
                polled = time.monotonic()
                await self.poll_once()

    def _stored(self) -> RunRecord | None:
        if self.recorder is None:
            return None
        try:
            return self.recorder.store.get(self.recorder.run_id)
        except StoreError:
            return None  # a store that cannot be read now: the safety poll still finishes the run

    def _absorb_record(self, record: RunRecord) -> None:
        """Take the outcome a webhook receiver recorded (it is the service's, fetched when the webhook came)."""
        self._set_text(record.text)
        self._items = OutputItems(record.items)
        self._from_events = False
        self.error, self.status, self.ended_at = record.error, record.status, time.time()
        self._notify("text")
        self._notify("status")
        if self.status == "failed" and self.raise_on_failure:
            raise self.failure()

    async def _finish_from_snapshots(self) -> AgentResponseUpdate:
        """Follow the run by polling to its end; one update hands out the text the stream did not deliver."""
        before = self.text
        await self.poll_once()
        while not self.terminal:
            await asyncio.sleep(self.poll_interval)
            await self.poll_once()
        rest = self.text[len(before):] if self.text.startswith(before) else ""
        return AgentResponseUpdate(rest, self.sequence_number or 0, self.status, self.response_id, ENDED_EVENT,
                                   terminal=True)

