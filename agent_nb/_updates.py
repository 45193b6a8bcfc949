"""What a run hands back: one update per streamed event, and a response when it is asked for a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._contents import Content, contents_of_event, contents_of_items
from ._token import ContinuationToken

__all__ = ["AgentResponse", "AgentResponseUpdate"]


class AgentResponseUpdate:
    """One streamed event of a run, in Agent Framework's shape.

    ``text`` is the new text (a delta; empty for events that carry none); ``contents`` the event as typed contents.
    ``continuation_token`` resumes right after this update; it is ``None`` on the final update of a run that has
    ended, as "finished" is spelled there, and on every update of a response created without ``background`` (it
    cannot be resumed).
    """

    __slots__ = ("_item", "_resumable", "_terminal", "raw_representation", "response_id", "sequence_number",
                 "status", "text", "type")

    def __init__(self, text: str, sequence_number: int, status: str, response_id: str | None, type: str,
                 terminal: bool = False, resumable: bool = True, raw: dict[str, Any] | None = None,
                 item: dict[str, Any] | None = None) -> None:
        self.text = text
        #: The event as it came from the service (None for an update made here, such as a run's polled end).
        self.raw_representation = raw
        self._item = item
        self.sequence_number = sequence_number
        self.status = status
        self.response_id = response_id
        self.type = type
        self._terminal = terminal
        self._resumable = resumable

    @property
    def continuation_token(self) -> ContinuationToken | None:
        if self._terminal or not self._resumable or self.response_id is None:
            return None
        return ContinuationToken(self.response_id, self.sequence_number)

    @property
    def contents(self) -> list[Content]:
        """What this event adds, as typed contents: text and reasoning deltas, a function call announced or
        settled, a search's progress, code, a citation, an approval request, the usage at the end."""
        if self.raw_representation is None:
            return [Content("text", text=self.text, merge_mode="append")] if self.text else []
        return contents_of_event(self.raw_representation, self._item)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return (f"AgentResponseUpdate(type={self.type!r}, sequence_number={self.sequence_number}, "
                f"status={self.status!r}, text={self.text!r})")


@dataclass
class AgentResponse:
    """The state of a run when it was asked for: its text so far (all of it once finished) and how it stands.

    ``continuation_token`` is ``None`` once the run has ended (completed, failed, cancelled or incomplete); while it
    is set, pass it back as ``options={"continuation_token": ...}`` to continue.
    """

    text: str
    status: str
    response_id: str | None
    continuation_token: ContinuationToken | None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    run_id: str | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False)
    #: The output items (the Response object's ``output``): messages, reasoning, tool calls, approval requests.
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: While ``status`` is ``waiting``: the calls that wait for a person's approval (``approve()`` / ``reject()``).
    user_input_requests: list[Any] = field(default_factory=list, repr=False)

    @property
    def contents(self) -> list[Content]:
        """The items as typed contents, in order, then the usage (if known)."""
        return contents_of_items(self.items, self.usage)

    def __str__(self) -> str:
        return self.text
