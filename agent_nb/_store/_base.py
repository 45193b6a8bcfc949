"""The run store interface, shared by every backend."""

from __future__ import annotations

import abc
import builtins
import contextlib
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from .._errors import StoredRunNotFound, StoreError
from ._ledger import BatchLedger
from ._record import FIELDS, TERMINAL, RunRecord

__all__ = ["RunStore"]

_S = TypeVar("_S", bound="RunStore")

#: Fields :meth:`RunStore.update` may change (a run's id is its identity).
UPDATABLE = frozenset(FIELDS) - {"run_id"}


class RunStore(abc.ABC):
    """Where background runs are recorded so a new process can resume them.

    Every method is safe to call from several threads; backends are also safe to share between processes.
    Records come back as fresh :class:`RunRecord` objects: changing one does not change the store.
    """

    @abc.abstractmethod
    def add(self, record: RunRecord) -> None:
        """Record a new run. A run with the same id already stored is a :class:`StoreError`."""

    @abc.abstractmethod
    def get(self, run_id: str) -> RunRecord:
        """The run with this id; :class:`StoredRunNotFound` if there is none."""

    @abc.abstractmethod
    def find(self, response_id: str) -> RunRecord | None:
        """The run recorded for this response id (the newest, if several were), or None."""

    @abc.abstractmethod
    def list(self, status: str | Iterable[str] | None = None, *, limit: int | None = None) -> builtins.list[RunRecord]:
        """Stored runs, newest first.

        Args:
            status: only runs with this status, or with one of these statuses.
            limit: at most this many runs.
        """

    def update(self, run_id: str, /, **fields: Any) -> RunRecord:
        """Change some fields of a run and return the updated record; ``updated_at`` moves to now unless given.

        Raises:
            StoreError: a field name is not one of :class:`RunRecord`'s (or is ``run_id``).
            StoredRunNotFound: there is no such run.
        """
        unknown = sorted(set(fields) - UPDATABLE)
        if unknown:
            raise StoreError(f"Cannot update {', '.join(map(repr, unknown))} of run '{run_id}': not a field a "
                             f"run record can change. Fields: {', '.join(sorted(UPDATABLE))}.")
        fields.setdefault("updated_at", time.time())
        return self._update(run_id, fields)

    @abc.abstractmethod
    def _update(self, run_id: str, fields: dict[str, Any]) -> RunRecord:
        """Apply already-checked field values atomically and return the new record."""

    def checkpoint(self, run_id: str, sequence_number: int, text: str, status: str | None = None, *,
                   items: builtins.list[dict[str, Any]] | None = None, response_id: str | None = None) -> bool:
        """Record how far a run's stream got, atomically, if that is further than the store has it.

        ``text`` must be exactly the output of events ``0..sequence_number``, and ``items`` (when given) the output
        items those events built, in the store's form (see :attr:`RunRecord.items`). They are written together or
        not at all, so after a crash at any moment the store holds a state that was written together. It is written only
        while the run is unfinished and ``sequence_number`` is past the stored one: a process that lags behind (or
        resumes from an older token) never moves a run back, and nothing overwrites a finished run. Also sets
        ``status`` when given. With ``response_id``, it is written only while the run is at that response: a run
        that goes on in a new response (a tool round) is never given the position of the one before. Returns whether
        it was written.
        """
        fields: dict[str, Any] = {"sequence_number": sequence_number, "text": text, "updated_at": time.time()}
        if items is not None:
            fields["items"] = items
        if status is not None:
            fields["status"] = status
        return self._advance(run_id, fields, past=sequence_number, response_id=response_id)

    def note_status(self, run_id: str, status: str, *, error: dict[str, Any] | None = None) -> bool:
        """Set an unfinished run's status (and its ``error`` when given); a finished run is left as it is.

        This is how a status that is not a stream position is recorded: a polled run going ``in_progress``, or a
        run the service no longer has becoming ``lost``. Returns whether it was written.
        """
        fields: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if error is not None:
            fields["error"] = error
        return self._advance(run_id, fields, past=None)

    def finish(self, run_id: str, response_id: str, status: str, text: str, *,
               items: builtins.list[dict[str, Any]] | None = None, error: dict[str, Any] | None = None) -> bool:
        """Record an unfinished run's outcome from the service's Response object, if the run is still at that
        response; a finished run is left as it is. ``text`` is the service's final text (so no sequence number goes
        with it). Returns whether it was written."""
        fields: dict[str, Any] = {"status": status, "text": text, "sequence_number": None, "error": error,
                                  "updated_at": time.time()}
        if items is not None:
            fields["items"] = items
        return self._advance(run_id, fields, past=None, response_id=response_id)

    @abc.abstractmethod
    def _advance(self, run_id: str, fields: dict[str, Any], *, past: int | None,
                 response_id: str | None = None) -> bool:
        """Apply ``fields`` atomically if the run is unfinished, when ``past`` is given its stored sequence number
        is None or below ``past``, and when ``response_id`` is given it is the stored one; return whether they were
        applied (:class:`StoredRunNotFound` if the run is not there)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A block whose writes are committed together where the backend can (SQLite); elsewhere each write is
        atomic on its own. Batches use it to record many runs in one commit."""
        yield None

    def ledger(self) -> BatchLedger:
        """The batches kept in this store (see :mod:`agent_nb.batch`)."""
        raise StoreError(f"{self} cannot keep batches; use a SQLiteRunStore or a RedisRunStore.")

    @abc.abstractmethod
    def delete(self, run_id: str) -> None:
        """Forget a run; :class:`StoredRunNotFound` if there is none."""

    @abc.abstractmethod
    def prune(self, older_than: float, *, statuses: Iterable[str] = TERMINAL) -> int:
        """Delete the runs with one of ``statuses`` not updated for ``older_than`` seconds; return how many."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Closing twice is harmless."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _not_found(self, run_id: str) -> StoredRunNotFound:
        return StoredRunNotFound(f"No run '{run_id}' in {self}: it was never recorded here, or it was deleted or "
                                 "pruned. store.list() shows the runs it has.")


def status_filter(status: str | Iterable[str] | None) -> frozenset[str] | None:
    """Normalise a ``status`` argument: None for any status, else the set of statuses wanted."""
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset({status})
    return frozenset(status)
