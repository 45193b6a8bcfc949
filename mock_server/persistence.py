"""SQLite persistence for ``--db``: responses and their events survive ``kill -9`` and a restart.

Writes are queued from the event loop and committed by one writer thread in batches, so persistence costs a
stream a queue append per event. Every write gets a ticket; :meth:`SQLitePersistence.wait` lets a request wait
until its write is committed, which is how a create, a cancel and a delete are made durable before they are
answered (events stay batched: a lost event is regenerated deterministically from the stored request). Events are
committed in order, so after a crash the stored events of a response are always a prefix of what was sent.

A write that fails (a full disk, a damaged file) is reported on stderr and in :attr:`SQLitePersistence.health`,
and the writer goes on with the next; a request waiting on it gets :class:`PersistenceError`. The writer thread
cannot die silently: if it stops, every later wait fails at once, so the server never acknowledges what it did not
save.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["PersistenceError", "SQLitePersistence"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, record TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    response_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (response_id, seq)
) WITHOUT ROWID;
"""
_BATCH = 5000
_STOP = object()


class PersistenceError(Exception):
    """The database could not be opened, read or written."""


Loaded = tuple[dict[str, Any], list[bytes]]


class SQLitePersistence:
    """Stores response records and event frames in one SQLite file (WAL mode).

    Opening reads every stored response (:attr:`loaded`), so a damaged file is reported at once, as one
    :class:`PersistenceError` naming it, not later as a traceback.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            try:
                db.executescript(_SCHEMA)
                #: Every stored response with the contiguous prefix of its event frames, read at opening.
                self.loaded: list[Loaded] = list(self._read(db))
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise PersistenceError(f"{self.path} cannot be used as the mock server's database ({exc}). If it is "
                                   "damaged or not a mock server database, move it aside or pass another --db."
                                   ) from None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._issued = 0  # tickets handed out
        self._done = 0  # every op up to this ticket has been committed or has failed
        self._watched: set[int] = set()  # tickets someone may wait on: their failures are kept
        self._failed: dict[int, str] = {}
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[str | None]]] = []
        self.failed_writes = 0
        self.last_error: str | None = None
        self.stopped: str | None = None  # why the writer thread stopped, if it did
        self._reported_at = 0.0
        self._thread = threading.Thread(target=self._write_loop, name="mock-server-sqlite", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode, a commit survives the process being killed
        return db

    # -- writes (from the event loop) -------------------------------------------------------------------------
    def save_record(self, record: dict[str, Any], updated_at: float) -> int:
        """Queue the response's record; returns the ticket to :meth:`wait` on."""
        return self._put("record", (record["id"], json.dumps(record, ensure_ascii=False), updated_at), watch=True)

    def save_event(self, response_id: str, seq: int, event_type: str, data: str) -> int:
        return self._put("event", (response_id, seq, event_type, data))

    def delete(self, response_id: str) -> int:
        return self._put("delete", (response_id,), watch=True)

    def _put(self, kind: str, args: tuple[Any, ...], *, watch: bool = False) -> int:
        with self._lock:
            self._issued += 1
            ticket = self._issued
            if watch:
                self._watched.add(ticket)
        self._queue.put((ticket, kind, args))
        return ticket

    async def wait(self, ticket: int) -> None:
        """Return once the write with this ticket is committed; raise :class:`PersistenceError` if it failed."""
        future: asyncio.Future[str | None] | None = None
        with self._lock:
            if self._done >= ticket or self.stopped is not None:
                reason = self._outcome(ticket)
            else:
                future = asyncio.get_running_loop().create_future()
                self._waiters.append((ticket, asyncio.get_running_loop(), future))
        if future is not None:
            reason = await future
        if reason is not None:
            raise PersistenceError(reason)

    def _outcome(self, ticket: int) -> str | None:
        """The failure of a finished ticket, if any (called with the lock held); forgets it."""
        self._watched.discard(ticket)
        reason = self._failed.pop(ticket, None)
        if reason is None and self.stopped is not None and ticket > self._done:
            reason = f"the database writer has stopped ({self.stopped})"
        return reason

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far has been written (or has failed)."""
        with self._lock:
            issued = self._issued
            return self._lock.wait_for(lambda: self._done >= issued or self.stopped is not None, timeout)

    def close(self) -> None:
        self.flush()
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    @property
    def health(self) -> dict[str, Any]:
        """For ``/mock/health``: where the database is and whether writes are succeeding."""
        return {"db": str(self.path), "writer": "running" if self.stopped is None else f"stopped: {self.stopped}",
                "failed_writes": self.failed_writes, "last_error": self.last_error}

    # -- the writer thread ------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            while True:
                batch = [self._queue.get()]
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                ops = [op for op in batch if op is not _STOP]
                if ops:
                    self._write(db, ops)
                if len(ops) < len(batch):
                    return
        except BaseException as exc:  # the writer must never vanish quietly: say so, and fail every waiter
            self._stop(f"{type(exc).__name__}: {exc}")
        finally:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    def _write(self, db: sqlite3.Connection, ops: list[tuple[int, str, tuple[Any, ...]]]) -> None:
        failures: dict[int, str] = {}
        try:
            self._commit(db, ops)
        except Exception:
            self._rollback(db)
            for op in ops:  # find the ones that fail, so that one bad write does not take the batch with it
                try:
                    self._commit(db, [op])
                except Exception as exc:
                    self._rollback(db)
                    failures[op[0]] = self._report(op, exc)
        self._finish(ops[-1][0], failures)

    @staticmethod
    def _commit(db: sqlite3.Connection, ops: list[tuple[int, str, tuple[Any, ...]]]) -> None:
        db.execute("BEGIN")
        for _, kind, args in ops:
            if kind == "event":
                db.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)", args)
            elif kind == "record":
                db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", args)
            else:
                db.execute("DELETE FROM responses WHERE id = ?", args)
                db.execute("DELETE FROM events WHERE response_id = ?", args)
        db.execute("COMMIT")

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _report(self, op: tuple[int, str, tuple[Any, ...]], exc: Exception) -> str:
        _, kind, args = op
        what = {"event": f"event {args[1]} of response {args[0]}", "record": f"response {args[0]}",
                "delete": f"the deletion of response {args[0]}"}[kind]
        reason = f"could not save {what} to {self.path}: {exc}"
        self.failed_writes += 1
        now = time.monotonic()
        if reason.split(":")[-1] != (self.last_error or "").split(":")[-1] or now - self._reported_at > 10:
            print(f"mock_server: {reason} ({self.failed_writes} failed writes so far)", file=sys.stderr, flush=True)
            self._reported_at = now
        self.last_error = reason
        return reason

    def _finish(self, ticket: int, failures: dict[int, str]) -> None:
        with self._lock:
            self._done = ticket
            for failed, reason in failures.items():
                if failed in self._watched:
                    self._failed[failed] = reason
            ready = [w for w in self._waiters if w[0] <= ticket]
            self._waiters = [w for w in self._waiters if w[0] > ticket]
            outcomes = [(loop, future, self._outcome(number)) for number, loop, future in ready]
            self._lock.notify_all()
        for loop, future, outcome in outcomes:
            _resolve_soon(loop, future, outcome)

    def _stop(self, reason: str) -> None:
        print(f"mock_server: the database writer for {self.path} stopped ({reason}); nothing more is saved, and "
              "creates and cancels are refused until the server is restarted.", file=sys.stderr, flush=True)
        with self._lock:
            self.stopped = reason
            waiters, self._waiters = self._waiters, []
            outcomes = [(loop, future, self._outcome(number)) for number, loop, future in waiters]
            self._lock.notify_all()
        for loop, future, outcome in outcomes:
            _resolve_soon(loop, future, outcome)

    # -- reads (at opening) -----------------------------------------------------------------------------------
    @staticmethod
    def _read(db: sqlite3.Connection) -> list[Loaded]:
        loaded: list[Loaded] = []
        for response_id, record in db.execute("SELECT id, record FROM responses").fetchall():
            try:
                data = json.loads(record)
                if not isinstance(data, dict) or data.get("id") != response_id:
                    raise ValueError("not a response record")
            except ValueError as exc:
                print(f"mock_server: skipping stored response {response_id}: its record is damaged ({exc}).",
                      file=sys.stderr, flush=True)
                continue
            frames: list[bytes] = []
            for seq, event_type, payload in db.execute(
                "SELECT seq, type, data FROM events WHERE response_id = ? ORDER BY seq", (response_id,)
            ):
                if seq != len(frames):
                    break
                frames.append(b"event: " + event_type.encode() + b"\ndata: " + payload.encode() + b"\n\n")
            loaded.append((data, frames))
        return loaded


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[str | None], reason: str | None) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(reason)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
        loop.call_soon_threadsafe(resolve)
