"""A batch's writes, gathered and committed together a few times a second.

Thousands of items finish per second at full speed; writing each on its own would make the store the bottleneck.
The engine notes what changed (run records and ledger items) and a flush commits it in one transaction (SQLite) or
a few round trips (Redis). A flush that fails keeps everything for the next one: every write is idempotent (a
finished run is never moved, a ledger write is fenced by the owner), so repeating one is harmless.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable
from typing import Any

from .._errors import StoredRunNotFound, StoreError, StoreWarning
from .._store import RunStore
from .._store._ledger import BatchLedger

__all__ = ["Writes", "warn_store_failed"]


class Writes:
    """Pending writes of one batch engine; see the module docstring. Noted from the engine's loop, flushed from a
    worker thread, one flush at a time."""

    def __init__(self, store: RunStore, ledger: BatchLedger, name: str, owner: str) -> None:
        self.store = store
        self.ledger = ledger
        self.name = name
        self.owner = owner
        self.error: StoreError | None = None
        self._runs: list[Callable[[], Any]] = []
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        #: How many changes were noted, and how many of the first ones are committed (see :meth:`flush`).
        self.noted = 0
        self.committed = 0

    def __len__(self) -> int:
        return len(self._runs) + len(self._items)

    def run(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A run-store write, such as ``store.finish``, to make with the next flush."""
        with self._lock:
            self._runs.append(lambda: write(*args, **kwargs))
            self.noted += 1

    def item(self, key: str, **fields: Any) -> None:
        """Change ledger fields of an item with the next flush (later changes of a field win)."""
        with self._lock:
            self._items.setdefault(key, {}).update(fields)
            self.noted += 1

    def flush(self) -> bool:
        """Commit what is pending; return whether it all was (a failure is kept in ``error`` and warned about once)."""
        with self._flushing:
            with self._lock:
                runs, self._runs = self._runs, []
                items, self._items = self._items, {}
                noted = self.noted
            if not runs and not items:
                self.committed = noted
                return True
            try:
                with self.store.transaction():
                    for write in runs:
                        with contextlib.suppress(StoredRunNotFound):  # a record deleted meanwhile: nothing to do
                            write()
                    self.ledger.write(self.name, self.owner, items.items())
            except StoreError as exc:
                with self._lock:
                    self._runs[:0] = runs
                    for key, fields in items.items():
                        self._items[key] = {**fields, **self._items.get(key, {})}
                if self.error is None:
                    warn_store_failed(self.name, exc)
                self.error = exc
                return False
            self.error = None
            self.committed = noted
            return True


def warn_store_failed(name: str, exc: StoreError) -> None:
    """The one warning of a spell in which the batch's store refuses writes (a full disk, a lost Redis)."""
    warnings.warn(StoreWarning(f"Batch {name!r}: the run store could not be written ({exc}); the batch goes on and "
                               "keeps trying."), stacklevel=3)
