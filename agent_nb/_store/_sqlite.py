"""Runs in a local SQLite file: the default store, shared safely by every kernel and thread of one user."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._errors import StoreError
from .._home import agent_nb_home, make_private_dirs
from ._base import RunStore, status_filter
from ._record import FIELDS, TERMINAL, RunRecord
from ._sqlite_ledger import LEDGER_SCHEMA, SQLiteLedger

__all__ = ["SQLiteRunStore", "default_path"]

#: Schema changes only ever add columns and indexes, so an older agent-nb can still use a newer file: it reads
#: with ``SELECT *`` (unknown columns are ignored) and writes the columns it knows (new ones have defaults).
#: ``_MIGRATIONS[n]`` takes a file from version n to n + 1; a new file goes through all of them.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS runs (
            run_id TEXT PRIMARY KEY,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt TEXT NOT NULL,
            response_id TEXT,
            instructions TEXT,
            status TEXT NOT NULL,
            sequence_number INTEGER,
            text TEXT NOT NULL,
            error TEXT,
            name TEXT,
            labels TEXT NOT NULL,
            previous_response_id TEXT,
            mode TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS runs_response_id ON runs (response_id, created_at)",
        "CREATE INDEX IF NOT EXISTS runs_status ON runs (status, created_at)",
    ),
    ("ALTER TABLE runs ADD COLUMN service TEXT",),  # the endpoint's kind, e.g. the bundled mock server
    ("ALTER TABLE runs ADD COLUMN items TEXT",),  # the output items, as JSON
    ("ALTER TABLE runs ADD COLUMN chain TEXT",),  # the tool rounds of a run with function tools, as JSON
    LEDGER_SCHEMA,  # batches: their items, and which process works on each
)
SCHEMA_VERSION = len(_MIGRATIONS)
_JSON_COLUMNS = frozenset({"labels", "error", "items", "chain"})
_ORDER = "ORDER BY created_at DESC, run_id DESC"
_BUSY_TIMEOUT = 10.0  # seconds another process may hold the write lock before we give up

#: Connections inherited through fork(): never used or closed in the child (SQLite forbids both), only kept alive.
_inherited: builtins.list[sqlite3.Connection] = []


def default_path() -> Path:
    """``$AGENT_NB_HOME/runs.sqlite3``, with ``AGENT_NB_HOME`` defaulting to ``~/.agent_nb``."""
    return agent_nb_home() / "runs.sqlite3"


def _encode(name: str, value: Any) -> Any:
    return json.dumps(value) if name in _JSON_COLUMNS and value is not None else value


def _record(row: sqlite3.Row) -> RunRecord:
    data = {name: row[name] for name in row.keys()}  # noqa: SIM118 (sqlite3.Row is not a mapping)
    for name in _JSON_COLUMNS & data.keys():
        if data[name] is not None:
            data[name] = json.loads(data[name])
    return RunRecord.from_dict(data)


class SQLiteRunStore(RunStore):
    """Runs in a SQLite file, by default ``~/.agent_nb/runs.sqlite3``.

    The directory is created private (0o700) and the file too (0o600): prompts and outputs can be sensitive.
    WAL mode and a 10 s busy timeout let several processes use the file at once; within a process one connection is
    shared behind a lock. A process forked from one that had the store open reconnects by itself.

    Args:
        path: the database file; defaults to :func:`default_path`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._lock = threading.RLock()  # re-entrant: writes made inside transaction() take it again
        self._closed = False
        self._pid = os.getpid()
        self._conn = self._open()

    def __repr__(self) -> str:
        return f"SQLiteRunStore({str(self.path)!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- opening -------------------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self._create_file()
        except OSError as exc:
            raise StoreError(f"Cannot open the run store {self.path}: {exc.strerror or exc}. Check that the path is "
                             "a file in a directory you can write to, or pass another path (or set AGENT_NB_HOME)."
                             ) from exc
        try:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT * 1000)}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: durable across process crashes, and fast
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._unusable(exc) from exc
        self._match_sidecar_modes()
        return conn

    def _create_file(self) -> None:
        """Create the directories (0o700) and the file (0o600) ourselves, so none is ever readable by others."""
        make_private_dirs(self.path.parent)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))

    def _match_sidecar_modes(self) -> None:
        """Give the -wal and -shm files the database file's permissions (SQLite usually does; make sure)."""
        try:
            mode = self.path.stat().st_mode & 0o777
        except OSError:
            return
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):  # absent, or not ours to change
                os.chmod(f"{self.path}{suffix}", mode)

    @staticmethod
    def _use_wal(conn: sqlite3.Connection) -> None:
        """Switch the file to WAL mode once. Switching needs a lock the busy timeout does not wait for, so several
        processes opening a new store at once retry until one of them has done it (it is then a property of the
        file)."""
        deadline = time.monotonic() + _BUSY_TIMEOUT
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")  # one process migrates the file; the others wait, then see it done
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {max(version, SCHEMA_VERSION)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"The run store {self.path} cannot be opened ({exc}). If the file is damaged or not a "
                          "run store, move it aside (a new one is then created in its place), or pass another path "
                          "(or set AGENT_NB_HOME).")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, held under the lock; SQLite errors become :class:`StoreError`."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self} is closed.")
            if self._pid != os.getpid():  # forked: the parent's connection must not be touched here
                _inherited.append(self._conn)
                self._conn = self._open()
                self._pid = os.getpid()
            conn = self._conn
            try:
                yield conn
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"The run store {self.path} could not be read or written: {exc}.") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Writes made inside (through this store or its ledger) are committed together, or not at all."""
        with self._connection() as conn:
            if conn.in_transaction:  # nested: the outer one commits
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # a failed statement inside may have rolled it back already
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def ledger(self) -> SQLiteLedger:
        """The batches kept in this file."""
        return SQLiteLedger(self)

    # -- RunStore ------------------------------------------------------------------------------------------------

    def add(self, record: RunRecord) -> None:
        values = record.to_dict()
        columns = ", ".join(FIELDS)
        marks = ", ".join("?" for _ in FIELDS)
        try:
            with self._connection() as conn:
                conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})",
                             [_encode(name, values[name]) for name in FIELDS])
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise StoreError(f"{self} already has a run '{record.run_id}'.") from None
            raise

    def get(self, run_id: str) -> RunRecord:
        with self._connection() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._not_found(run_id)
        return _record(row)

    def find(self, response_id: str) -> RunRecord | None:
        with self._connection() as conn:
            row = conn.execute(f"SELECT * FROM runs WHERE response_id = ? {_ORDER} LIMIT 1", (response_id,)).fetchone()
        return None if row is None else _record(row)

    def list(self, status: str | Iterable[str] | None = None, *, limit: int | None = None) -> builtins.list[RunRecord]:
        wanted = status_filter(status)
        where = ""
        params: builtins.list[Any] = []
        if wanted is not None:
            where = f"WHERE status IN ({', '.join('?' for _ in wanted)})"
            params.extend(sorted(wanted))
        if limit is not None:
            params.append(max(limit, 0))
        with self._connection() as conn:
            rows = conn.execute(f"SELECT * FROM runs {where} {_ORDER} {'' if limit is None else 'LIMIT ?'}",
                                params).fetchall()
        return [_record(row) for row in rows]

    def _update(self, run_id: str, fields: dict[str, Any]) -> RunRecord:
        assignments = ", ".join(f"{name} = ?" for name in fields)  # names were checked against FIELDS
        with self.transaction() as conn:
            changed = conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?",
                                   [*(_encode(name, value) for name, value in fields.items()), run_id]).rowcount
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if not changed or row is None:
            raise self._not_found(run_id)
        return _record(row)

    def _advance(self, run_id: str, fields: dict[str, Any], *, past: int | None,
                 response_id: str | None = None) -> bool:
        # One UPDATE is one transaction: every field is committed together or not at all, and the conditions are
        # checked in the same statement, so no other writer can slip in between.
        assignments = ", ".join(f"{name} = ?" for name in fields)
        finished = ", ".join("?" for _ in TERMINAL)
        sql = f"UPDATE runs SET {assignments} WHERE run_id = ? AND status NOT IN ({finished})"
        params: builtins.list[Any] = [*(_encode(name, value) for name, value in fields.items()), run_id,
                                      *sorted(TERMINAL)]
        if past is not None:
            sql += " AND (sequence_number IS NULL OR sequence_number < ?)"
            params.append(past)
        if response_id is not None:
            sql += " AND response_id = ?"
            params.append(response_id)
        with self._connection() as conn:
            if conn.execute(sql, params).rowcount:
                return True
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise self._not_found(run_id)
        return False

    def delete(self, run_id: str) -> None:
        with self._connection() as conn:
            changed = conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount
        if not changed:
            raise self._not_found(run_id)

    def prune(self, older_than: float, *, statuses: Iterable[str] = TERMINAL) -> int:
        wanted = sorted(set(statuses))
        if not wanted:
            return 0
        marks = ", ".join("?" for _ in wanted)
        with self._connection() as conn:
            return conn.execute(f"DELETE FROM runs WHERE updated_at < ? AND status IN ({marks})",
                                [time.time() - older_than, *wanted]).rowcount

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._pid == os.getpid():
                    self._conn.close()
