"""The batch ledger: which items a batch has, who works on each, and how each ended.

A batch's items live next to its runs, in the run store, so a batch survives a restarted kernel and is shared by
every process (and, with Redis, every machine) that uses the store. Each item is worked on by one *owner* at a time
(a process, named by :func:`new_owner`): it claims pending items atomically, heartbeats its lease, and writes only
the items it still owns, so a process that lost its lease (it hung, or was taken for dead) cannot overwrite the one
that took its items over.
"""

from __future__ import annotations

import abc
import builtins
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ITEM_STATUSES",
    "OPEN_STATUSES",
    "BatchInfo",
    "BatchItem",
    "BatchLedger",
    "new_owner",
    "owner_alive",
]

#: ``pending``: not sent yet (or to be sent again); ``claimed``: an owner will send it (its create has not been
#: sent); ``submitting``: its create may have been sent; ``running``: the service has it (``response_id`` is set);
#: the rest are final.
ITEM_STATUSES = ("pending", "claimed", "submitting", "running", "completed", "incomplete", "failed", "cancelled")
OPEN_STATUSES = frozenset({"pending", "claimed", "submitting", "running"})
FINAL_STATUSES = frozenset(ITEM_STATUSES) - OPEN_STATUSES
_HOST = socket.gethostname()


def new_owner() -> str:
    """A name for this process as an item owner: ``host:pid:random`` (the random part tells forks apart)."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named ``owner`` is alive, when that can be told from here (it ran on this host);
    None when it ran elsewhere (then only its lease tells)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class BatchInfo:
    """A batch as stored: its name, what each item's request is made of (``spec``), and whether it was cancelled."""

    name: str
    spec: dict[str, Any]
    state: str = "open"  # or "cancelled"
    created_at: float = field(default_factory=time.time)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def unfinished(self) -> int:
        return sum(n for status, n in self.counts.items() if status in OPEN_STATUSES)


@dataclass
class BatchItem:
    """One item of a batch: its input, its current run, and how it ended.

    ``attempts`` counts the creates sent for it; ``run_id`` is its latest run's id in the run store.
    """

    key: str
    position: int
    input: Any
    status: str = "pending"
    run_id: str | None = None
    response_id: str | None = None
    attempts: int = 0
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    owner: str | None = None
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchItem:
        return cls(**{k: v for k, v in data.items() if k in _ITEM_FIELDS})


_ITEM_FIELDS = frozenset(BatchItem.__dataclass_fields__)
#: Fields :meth:`BatchLedger.write` may change.
WRITABLE = frozenset({"status", "run_id", "response_id", "attempts", "error", "usage"})


class BatchLedger(abc.ABC):
    """The batches of one run store (see the module docstring). Every method is atomic on its own."""

    @abc.abstractmethod
    def open(self, name: str, spec: dict[str, Any]) -> tuple[BatchInfo, bool]:
        """The batch called ``name``, created with ``spec`` if there is none; and whether it was created."""

    @abc.abstractmethod
    def get(self, name: str) -> BatchInfo | None:
        """The batch called ``name`` with its counts by status, or None."""

    @abc.abstractmethod
    def list(self) -> builtins.list[BatchInfo]:
        """Every stored batch with its counts, newest first."""

    @abc.abstractmethod
    def add(self, name: str, items: Sequence[tuple[str, Any]]) -> int:
        """Add ``(key, input)`` items the batch does not have yet, after the ones it has; return how many."""

    @abc.abstractmethod
    def claim(self, name: str, owner: str, run_ids: Sequence[str]) -> builtins.list[BatchItem]:
        """Take up to ``len(run_ids)`` pending items, in order, for ``owner``: each becomes ``claimed`` with the
        next of ``run_ids`` and one more attempt. Nothing is claimed from a cancelled batch."""

    @abc.abstractmethod
    def write(self, name: str, owner: str, changes: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Apply ``(key, fields)`` changes to the items ``owner`` still owns; return how many were applied.

        An item that becomes final, or ``pending`` again, is no longer owned by anyone.
        """

    @abc.abstractmethod
    def heartbeat(self, name: str, owner: str, lease: float) -> None:
        """Keep ``owner``'s items its own for ``lease`` more seconds."""

    @abc.abstractmethod
    def release(self, name: str, owner: str) -> None:
        """End ``owner``'s lease now: another process may take its unfinished items over at once."""

    @abc.abstractmethod
    def adopt(self, name: str, owner: str) -> builtins.list[BatchItem]:
        """Take over the unfinished items of owners that are gone (their lease ran out, or their process on this
        host has died), and return them, still ``claimed``, ``submitting`` or ``running``, now ``owner``'s."""

    @abc.abstractmethod
    def items(self, name: str, statuses: Iterable[str] | None = None) -> builtins.list[BatchItem]:
        """The batch's items (with one of ``statuses``), in input order."""

    @abc.abstractmethod
    def reset(self, name: str, statuses: Iterable[str]) -> int:
        """Make the unowned items with one of ``statuses`` pending again, with no attempts and no error (how
        failed items are retried); reopens a cancelled batch. Return how many."""

    @abc.abstractmethod
    def cancel(self, name: str) -> int:
        """Mark the batch cancelled and its pending items ``cancelled``; return how many items that was."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Forget the batch and its items (their runs stay in the run store)."""
