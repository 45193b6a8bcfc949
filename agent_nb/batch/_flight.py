"""One item an engine works on now: the little it needs to create or follow the item's run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._store._ledger import BatchItem

if TYPE_CHECKING:
    from .._run import BackgroundRun

__all__ = ["Flight"]


class Flight:
    """An item this engine works on now: the little it needs to create or follow the item's run."""

    __slots__ = ("attempts", "cancel_sent", "failures", "input", "interval", "key", "response_id", "run", "run_id")

    def __init__(self, item: BatchItem) -> None:
        self.key = item.key
        self.input = item.input
        self.run_id = str(item.run_id)
        self.response_id = item.response_id
        self.attempts = item.attempts
        self.interval = 0.0
        self.failures = 0
        self.cancel_sent = False
        self.run: BackgroundRun | None = None
