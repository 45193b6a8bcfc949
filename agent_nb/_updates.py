"""What a run hands back: one update per streamed event, and a response when it is asked for a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._token import ContinuationToken

__all__ = ["AgentResponse", "AgentResponseUpdate"]


class AgentResponseUpdate:
    """One streamed event of a run, in Agent Framework's shape.

    ``text`` is the new text (a delta; empty for events that carry none). ``continuation_token`` resumes right after
    this update; it is ``None`` on the final update of a run that has ended, as "finished" is spelled there, and on
    every update of a response created without ``background`` (it cannot be resumed).
    """

    __slots__ = ("_resumable", "_terminal", "response_id", "sequence_number", "status", "text", "type")

    def __init__(self, text: str, sequence_number: int, status: str, response_id: str | None, type: str,
                 terminal: bool = False, resumable: bool = True) -> None:
        self.text = text
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

    def __str__(self) -> str:
        return self.text
