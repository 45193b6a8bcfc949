"""SQLite persistence for ``--db``: responses and their events survive ``kill -9`` and a restart.

Writes are queued from the event loop and committed by one writer thread in batches, so persistence costs a
stream a queue append per event. Events are committed in order, so after a crash the stored events of a response
are always a prefix of what was sent; the run's deterministic plan regenerates the rest.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, record TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    response_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (response_id, seq)
) WITHOUT ROWID;
"""

_STOP = object()


class SQLitePersistence:
    """Stores response records and event frames in one SQLite file (WAL mode)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._flushed = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._write_loop, name="mock-server-sqlite", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writes (from the event loop) -------------------------------------------------------------------------
    def save_record(self, record: dict[str, Any], updated_at: float) -> None:
        self._put(("record", record["id"], json.dumps(record, ensure_ascii=False), updated_at))

    def save_event(self, response_id: str, seq: int, event_type: str, data: str) -> None:
        self._put(("event", response_id, seq, event_type, data))

    def delete(self, response_id: str) -> None:
        self._put(("delete", response_id))

    def _put(self, op: tuple[Any, ...]) -> None:
        with self._flushed:
            self._pending += 1
        self._queue.put(op)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is committed."""
        with self._flushed:
            return self._flushed.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self.flush()
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _write_loop(self) -> None:
        db = self._connect()
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < 5000:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(op is _STOP for op in batch)
                ops = [op for op in batch if op is not _STOP]
                if ops:
                    self._commit(db, ops)
                    with self._flushed:
                        self._pending -= len(ops)
                        self._flushed.notify_all()
                if stop:
                    return
        finally:
            db.close()

    @staticmethod
    def _commit(db: sqlite3.Connection, ops: list[tuple[Any, ...]]) -> None:
        db.execute("BEGIN")
        for op in ops:
            if op[0] == "event":
                db.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)", op[1:])
            elif op[0] == "record":
                db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", op[1:])
            else:
                db.execute("DELETE FROM responses WHERE id = ?", (op[1],))
                db.execute("DELETE FROM events WHERE response_id = ?", (op[1],))
        db.execute("COMMIT")

    # -- reads (at start-up) ----------------------------------------------------------------------------------
    def load(self) -> Iterator[tuple[dict[str, Any], list[bytes]]]:
        """Every stored response with the contiguous prefix of its stored event frames."""
        db = self._connect()
        try:
            for response_id, record in db.execute("SELECT id, record FROM responses").fetchall():
                frames: list[bytes] = []
                for seq, event_type, data in db.execute(
                    "SELECT seq, type, data FROM events WHERE response_id = ? ORDER BY seq", (response_id,)
                ):
                    if seq != len(frames):
                        break
                    frames.append(b"event: " + event_type.encode() + b"\ndata: " + data.encode() + b"\n\n")
                yield json.loads(record), frames
        finally:
            db.close()
