"""Batched checkpoints: a stream notes its progress on every event, and a thread writes only the latest, a few
times a second."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .._errors import StoredRunNotFound
from ._base import RunStore

__all__ = ["CheckpointWriter"]


@dataclass(frozen=True)
class _Note:
    sequence_number: int
    text: str
    status: str | None
    items: list[dict[str, Any]] | None
    response_id: str | None


class CheckpointWriter:
    """Batches checkpoints so that recording a stream costs it almost nothing.

    :meth:`note` only keeps the latest state of each run; a daemon thread writes what changed every ``interval``
    seconds, and :meth:`flush` writes it at once (call it at terminal events). A write that fails is kept in
    ``last_error`` (and :meth:`error_for` the run) and retried on the next pass, never raised into the stream; a run
    the store no longer has is dropped, and so is a note the store refuses because it already has that run further
    along (or finished). Notes wait in memory until written, so a writer thread that died (or a fork) loses none:
    the next note starts a new thread, and :meth:`flush` writes them anyway.

    Args:
        store: where checkpoints go.
        interval: seconds between background writes.
    """

    def __init__(self, store: RunStore, interval: float = 0.25) -> None:
        self.store = store
        self.interval = interval
        #: Why the latest pass that had something to write failed to write some of it; None if it wrote it all.
        self.last_error: Exception | None = None
        self._pending: dict[str, _Note] = {}
        self._errors: dict[str, Exception] = {}  # why the latest write of a run failed, until one succeeds
        self._lock = threading.Lock()  # guards _pending, _errors and _thread
        self._write_lock = threading.Lock()  # one pass at a time, so an older state never lands after a newer one
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def note(self, run_id: str, sequence_number: int, text: str, status: str | None = None, *,
             items: list[dict[str, Any]] | None = None, response_id: str | None = None) -> None:
        """Remember the run's latest state, to be written soon. O(1); never blocks on the store."""
        with self._lock:
            previous = self._pending.get(run_id)
            if status is None and previous is not None:
                status = previous.status  # a status change noted earlier must not be lost to a later note
            self._pending[run_id] = _Note(sequence_number, text, status, items, response_id)
            if not self._closed and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="agent-nb-checkpoints", daemon=True)
                self._thread.start()
        if self._closed:
            self.flush()
        else:
            self._dirty.set()

    def error_for(self, run_id: str) -> Exception | None:
        """Why the latest write of this run's notes failed, or None if it succeeded (or none was tried yet)."""
        with self._lock:
            return self._errors.get(run_id)

    def forget_error(self, run_id: str) -> None:
        """Forget a run's last write error (a new follower of the run starts with a clean slate)."""
        with self._lock:
            self._errors.pop(run_id, None)

    @property
    def pending(self) -> int:
        """How many runs have notes not yet written."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write everything noted so far, now, in this thread. Errors go to ``last_error``, not to the caller."""
        with self._write_lock:
            with self._lock:
                batch = list(self._pending.items())
            error: Exception | None = None
            retry = False
            for run_id, note in batch:
                failure: Exception | None = None
                try:
                    self.store.checkpoint(run_id, note.sequence_number, note.text, note.status, items=note.items,
                                          response_id=note.response_id)
                except StoredRunNotFound as exc:  # deleted or pruned: retrying cannot help, so drop the note
                    error = failure = exc
                except Exception as exc:  # kept for the next pass
                    error, retry = exc, True
                    with self._lock:
                        self._errors[run_id] = exc
                    continue
                with self._lock:
                    if failure is None:
                        self._errors.pop(run_id, None)
                    else:
                        self._errors[run_id] = failure
                    if self._pending.get(run_id) is note:  # unless a newer note came in meanwhile
                        del self._pending[run_id]
            if batch:
                self.last_error = error
        if retry:
            self._dirty.set()  # the background thread tries again after another interval

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.wait(self.interval):  # gather an interval's worth of notes; close() flushes the rest
                return
            self._dirty.clear()
            self.flush()

    def close(self) -> None:
        """Write everything still noted and stop the thread. Later notes are written at once."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stopping.set()
        self._dirty.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.flush()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
