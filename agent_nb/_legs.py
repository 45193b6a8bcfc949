"""A run that goes on in a new response: the tool loop's side of ``BackgroundRun``.

When a response of the run ends with calls for the agent's tools, the run does not end: the tool loop answers the
calls, and the run follows the follow-up response from its first event, its text and items carrying on after those
of the responses before (the ``prefix``). The run's token always resumes the response it is at.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from ._approvals import ApprovalRequest
from ._errors import ToolOutputsUnknown, ToolRoundsExceeded
from ._items import OutputItems, expand_items

if TYPE_CHECKING:
    from ._recorder import RunRecorder
    from ._tool_loop import ToolLoop

__all__ = ["Legs"]


class Legs:
    """The leg-switching half of ``BackgroundRun``."""

    if TYPE_CHECKING:  # what BackgroundRun provides
        tool_loop: ToolLoop | None
        recorder: RunRecorder | None
        response_id: str | None
        sequence_number: int | None
        status: str
        error: dict[str, Any] | None
        ended_at: float | None
        _create_body: dict[str, Any] | None
        _deliver_after: int | None
        _from_events: bool
        _items: OutputItems
        _text_length: int
        _leg_end: dict[str, Any] | None
        _prefix_items: list[dict[str, Any]]
        _prefix_length: int

        @property
        def text(self) -> str: ...
        def _notify(self, change: str) -> None: ...
        def start(self) -> asyncio.Task[Any]: ...

    def _split_prefix(self, items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """Items from the store: those of earlier responses become the prefix; the rest are this response's."""
        if self.tool_loop is None or not items:
            return items
        count = self.tool_loop.chain.prefix_count
        self._prefix_items, self._prefix_length = list(items[:count]), self.tool_loop.chain.prefix_length
        return items[count:]

    @property
    def items(self) -> list[dict[str, Any]]:
        """The output items so far, as the Response object lists them: messages, reasoning, tool calls, ...

        For a run with tools, those of every response it went through, each round's function outputs included.
        """
        return expand_items(self._prefix_items, self.text) + self._items.snapshot(self.text)

    def _stored_items(self) -> list[dict[str, Any]]:
        return self._prefix_items + self._items.stored()

    @property
    def stored_items(self) -> list[dict[str, Any]]:
        """The items in the run store's form: as ``items``, but each message part holds the ``_span`` of ``text``
        it covers instead of a copy of it (cheap to take however long the answer is)."""
        return self._stored_items()

    def tool_finished(self, call: dict[str, Any]) -> None:
        """A tool call of the current round has its output (called by the tool loop)."""
        self._notify("tools")

    async def _next_leg(self) -> bool:
        """If the response just finished was a round of calls, answer it and get ready to follow the next one."""
        response, self._leg_end = self._leg_end, None
        if response is None or self.tool_loop is None:
            return False
        try:
            body = await self.tool_loop.advance(self, response)  # type: ignore[arg-type]
            if body is None:  # a call waits for a person: the run waits with it
                self._wait_for_approval()
                return False
        except ToolRoundsExceeded as exc:
            self._end_loop("failed", "max_tool_rounds", str(exc))
            raise
        except ToolOutputsUnknown as exc:
            self._end_loop("lost", "tool_outputs_unknown", str(exc))
            raise
        self._prefix_items = self._stored_items() + self.tool_loop.outputs()
        self._prefix_length = self._text_length
        self._items = OutputItems()
        self.response_id, self.sequence_number, self._deliver_after = None, None, None
        self._create_body = body
        self._from_events = True
        self._notify("items")
        return True

    @property
    def user_input_requests(self) -> list[ApprovalRequest]:
        """What the run waits for while its status is ``waiting``: calls that need a person's approval."""
        if self.tool_loop is None:
            return []
        return [ApprovalRequest(call, self._answer) for call in self.tool_loop.pending()]

    def _wait_for_approval(self) -> None:
        self.status = "waiting"
        if self.recorder is not None:
            self.recorder.status("waiting")
        self._notify("status")

    def _answer(self, call_id: str, approved: bool, reason: str | None) -> None:
        """A person's decision; the last one continues the run (in a task, when an event loop is running)."""
        assert self.tool_loop is not None
        self.tool_loop.decide(self, call_id, approved, reason)  # type: ignore[arg-type]
        self._notify("approval")
        if self.tool_loop.pending() or self.status != "waiting":
            return
        self.status = "in_progress"
        if self.recorder is not None:
            self.recorder.status("in_progress")
        self._notify("status")
        with contextlib.suppress(RuntimeError):  # no running loop: wait() continues it
            asyncio.get_running_loop()
            self.start()

    def _leg_started(self, response_id: str | None, status: str) -> bool:
        """Record that the follow-up response exists (if this is one); True if it was."""
        loop = self.tool_loop
        if loop is None or loop.chain.step != "submitting" or self.recorder is None:
            return False
        loop.submitted(len(self._prefix_items), self._prefix_length)
        self.recorder.save(response_id=response_id, status=status, sequence_number=None, text=self.text,
                           items=self._stored_items(), chain=loop.chain.to_dict())
        return True

    def _end_loop(self, status: str, code: str, message: str) -> None:
        self.status, self.ended_at = status, time.time()
        self.error = {"code": code, "message": message}
        if self.recorder is not None:
            if status == "lost":
                self.recorder.status(status, error=self.error)
            else:
                self.recorder.finished(status, self.text, None, self.error, items=self._stored_items())
        self._notify("status")
