"""One run's record in the run store, kept up to date without ever letting the store break the run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from ._errors import StoreError, StoreWarning
from ._store import CheckpointWriter, RunRecord, RunStore

__all__ = ["RunRecorder"]

#: Called with the failure when a run's record could not be written.
StoreErrorHandler = Callable[[StoreError], None]


class RunRecorder:
    """Writes one run's progress to its record: checkpoints as it streams, its status, and its outcome.

    What it writes keeps the store's invariant: an unfinished run's ``text`` is exactly the output of events
    ``0..sequence_number`` (empty before any event), and a finished run's is the service's final text. The store
    itself refuses a checkpoint that would move a run back or touch a finished one.

    The run's outcome comes from the service, so a store that fails (a full disk, an unreachable Redis) is reported,
    never raised: ``error`` keeps the failure and ``on_error`` hears about each new one (by default a
    :class:`StoreWarning`); the run goes on, and the next write that succeeds clears ``error``.

    Args:
        store: the run store.
        record: the run's record, already added to the store.
        checkpoints: the batching writer for checkpoints.
        interval: seconds between checkpoints while the run streams (a status change or the end writes at once).
    """

    def __init__(self, store: RunStore, record: RunRecord, checkpoints: CheckpointWriter, *,
                 interval: float = 0.25) -> None:
        self.store = store
        self.record = record
        self.checkpoints = checkpoints
        self.interval = interval
        self.error: StoreError | None = None
        self.on_error: StoreErrorHandler | None = None
        self._last = 0.0
        checkpoints.forget_error(record.run_id)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def due(self) -> bool:
        """Whether a checkpoint is due (cheap: called on every event)."""
        return time.monotonic() - self._last >= self.interval

    def progress(self, sequence_number: int, text: str, status: str, *, now: bool = False,
                 items: list[dict[str, Any]] | None = None, response_id: str | None = None) -> None:
        """Note the run's position (its text and items after that event); ``now`` writes it at once instead of
        with the next batch."""
        self._last = time.monotonic()
        self.checkpoints.note(self.run_id, sequence_number, text, status, items=items, response_id=response_id)
        if now:
            self.checkpoints.flush()
        failure = self.checkpoints.error_for(self.run_id)
        if failure is not None:
            self._failed(failure)
        elif now:
            self.error = None

    def started(self, response_id: str | None, status: str) -> None:
        """The service confirmed the run: record its response id."""
        self.record.response_id = response_id
        self._write(self.store.update, self.run_id, response_id=response_id, status=status)

    def save(self, **fields: Any) -> None:
        """Write some fields of the record as they are (the tool loop's chain, a new response of the run)."""
        for name, value in fields.items():
            setattr(self.record, name, value)
        self._write(self.store.update, self.run_id, **fields)

    def status(self, status: str, *, error: dict[str, Any] | None = None) -> None:
        """A status that is not a stream position (a polled run's, or ``lost``); a finished record is left alone."""
        self._write(self.store.note_status, self.run_id, status, error=error)

    def finished(self, status: str, text: str, sequence_number: int | None, error: dict[str, Any] | None, *,
                 items: list[dict[str, Any]] | None = None) -> None:
        """The run ended: its outcome, final text and items, written once notes still waiting are written first."""
        self.checkpoints.flush()
        self._write(self.store.update, self.run_id, status=status, error=error, text=text,
                    sequence_number=sequence_number, items=items)

    def _write(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except StoreError as exc:
            self._failed(exc)
        else:
            self.error = None

    def _failed(self, exc: Exception) -> None:
        error = exc if isinstance(exc, StoreError) else StoreError(f"{type(exc).__name__}: {exc}")
        first = self.error is None or str(self.error) != str(error)
        self.error = error
        if not first:
            return
        if self.on_error is not None:
            self.on_error(error)
        else:
            warnings.warn(f"Run {self.run_id} goes on, but its record could not be written: {error}", StoreWarning,
                          stacklevel=4)
