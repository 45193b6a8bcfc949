"""One background run as the store keeps it: enough to find it again and to resume its stream exactly."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .._items import expand_items
from .._token import ContinuationToken

__all__ = ["FIELDS", "STATUSES", "TERMINAL", "RunRecord", "new_run_id"]

#: Statuses after which a run will not change any more.
TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})

#: Every status a record may have: the service's, plus ``starting`` (not yet created) and ``lost`` (the service no
#: longer knows it, so it can neither finish nor be resumed).
STATUSES = TERMINAL | {"starting", "queued", "in_progress", "waiting", "lost"}


def new_run_id() -> str:
    """A fresh local run id, ``run_`` and 16 hex characters."""
    return "run_" + secrets.token_hex(8)


@dataclass
class RunRecord:
    """A background run: what was asked, where, and how far its stream got.

    While the run is unfinished, ``text`` is exactly the output text of events ``0..sequence_number`` (empty while
    ``sequence_number`` is None), so resuming after that event neither repeats nor skips anything. Once it has
    finished, ``text`` is the service's final text, and ``sequence_number`` the last event's number when the run was
    streamed to its end (None when it was polled). ``endpoint`` is the API base URL only, and ``service`` its kind
    (``openai``, ``azure``, ``compatible`` or ``mock`` for the bundled mock server): records never hold a key.
    ``items`` are the output items of the same events (reasoning, tool calls, messages with their annotations), in
    a form that does not repeat the text: each message part holds the ``_span`` of ``text`` it covers; ``output``
    gives them back whole. A run with function tools spans several responses: ``chain`` records its tool rounds
    (see ``agent_nb._tool_loop.Chain``), ``response_id`` is the response it is at, ``sequence_number`` counts that
    response's events, and ``text`` and ``items`` are those of the responses before it followed by its own.
    """

    run_id: str
    endpoint: str
    model: str
    prompt: str
    response_id: str | None = None
    instructions: str | None = None
    status: str = "starting"
    sequence_number: int | None = None
    text: str = ""
    error: dict[str, Any] | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None
    mode: str = "stream"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    service: str | None = None
    items: list[dict[str, Any]] | None = None
    chain: dict[str, Any] | None = None

    @property
    def output(self) -> list[dict[str, Any]]:
        """The run's output items as the Response object lists them (``items`` with each message's text put back)."""
        return expand_items(self.items, self.text)

    @property
    def terminal(self) -> bool:
        """Whether the run has finished for good (completed, failed, cancelled or incomplete)."""
        return self.status in TERMINAL

    @property
    def token(self) -> ContinuationToken | None:
        """Where to resume the stream, or None when there is nothing to resume (no response yet, or finished)."""
        if self.response_id is None or self.terminal:
            return None
        return ContinuationToken(self.response_id, self.sequence_number)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build a record from :meth:`to_dict`'s output, ignoring keys it does not know.

        Unknown keys are dropped so that a record written by a newer agent-nb (with more fields) still loads here.
        """
        return cls(**{key: value for key, value in data.items() if key in FIELDS})


#: The names of :class:`RunRecord`'s fields, in declaration order.
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
