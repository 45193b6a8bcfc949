"""The batch ledger in the SQLite run store's file: three tables next to ``runs``."""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from ._ledger import FINAL_STATUSES, WRITABLE, BatchInfo, BatchItem, BatchLedger, owner_alive

if TYPE_CHECKING:
    from ._sqlite import SQLiteRunStore

__all__ = ["LEDGER_SCHEMA", "SQLiteLedger"]

#: The ledger's tables: one migration of the run store's file.
LEDGER_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batches (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS batch_items (
        batch TEXT NOT NULL,
        key TEXT NOT NULL,
        position INTEGER NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        run_id TEXT,
        response_id TEXT,
        attempts INTEGER NOT NULL,
        error TEXT,
        usage TEXT,
        owner TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (batch, key)
    )""",
    "CREATE INDEX IF NOT EXISTS batch_items_status ON batch_items (batch, status, position)",
    "CREATE INDEX IF NOT EXISTS batch_items_owner ON batch_items (batch, owner)",
    """CREATE TABLE IF NOT EXISTS batch_owners (
        batch TEXT NOT NULL,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (batch, owner)
    )""",
)
_JSON = ("input", "error", "usage")
_FINAL = tuple(sorted(FINAL_STATUSES))


def _item(row: sqlite3.Row) -> BatchItem:
    data = {name: row[name] for name in row.keys()}  # noqa: SIM118 (sqlite3.Row is not a mapping)
    for name in _JSON:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    return BatchItem.from_dict(data)


class SQLiteLedger(BatchLedger):
    """Batches in the run store's SQLite file; each method is one transaction."""

    def __init__(self, store: SQLiteRunStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.store.path)!r})"

    def _counts(self, conn: sqlite3.Connection, name: str) -> dict[str, int]:
        rows = conn.execute("SELECT status, COUNT(*) FROM batch_items WHERE batch = ? GROUP BY status", (name,))
        return {status: count for status, count in rows}

    def _info(self, conn: sqlite3.Connection, row: sqlite3.Row) -> BatchInfo:
        return BatchInfo(row["name"], json.loads(row["spec"]), row["state"], row["created_at"],
                         self._counts(conn, row["name"]))

    def open(self, name: str, spec: dict[str, Any]) -> tuple[BatchInfo, bool]:
        with self.store.transaction() as conn:
            created = conn.execute("INSERT OR IGNORE INTO batches VALUES (?, ?, 'open', ?)",
                                   (name, json.dumps(spec), time.time())).rowcount > 0
            row = conn.execute("SELECT * FROM batches WHERE name = ?", (name,)).fetchone()
            return self._info(conn, row), created

    def get(self, name: str) -> BatchInfo | None:
        with self.store.transaction() as conn:
            row = conn.execute("SELECT * FROM batches WHERE name = ?", (name,)).fetchone()
            return None if row is None else self._info(conn, row)

    def list(self) -> builtins.list[BatchInfo]:
        with self.store.transaction() as conn:
            rows = conn.execute("SELECT * FROM batches ORDER BY created_at DESC, name").fetchall()
            return [self._info(conn, row) for row in rows]

    def add(self, name: str, items: Sequence[tuple[str, Any]]) -> int:
        now = time.time()
        with self.store.transaction() as conn:
            if conn.execute("SELECT 1 FROM batches WHERE name = ?", (name,)).fetchone() is None:
                raise StoreError(f"There is no batch {name!r} in {self.store}.")
            start = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM batch_items WHERE batch = ?",
                                 (name,)).fetchone()[0]
            added = 0
            for key, value in items:
                added += conn.execute("INSERT OR IGNORE INTO batch_items (batch, key, position, input, status, "
                                      "attempts, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?)",
                                      (name, key, start + added, json.dumps(value), now)).rowcount
            return added

    def claim(self, name: str, owner: str, run_ids: Sequence[str]) -> builtins.list[BatchItem]:
        if not run_ids:
            return []
        with self.store.transaction() as conn:
            state = conn.execute("SELECT state FROM batches WHERE name = ?", (name,)).fetchone()
            if state is None or state[0] != "open":
                return []
            rows = conn.execute("SELECT key FROM batch_items WHERE batch = ? AND status = 'pending' "
                                "ORDER BY position LIMIT ?", (name, len(run_ids))).fetchall()
            now = time.time()
            conn.executemany("UPDATE batch_items SET status = 'claimed', owner = ?, run_id = ?, response_id = NULL,"
                             " attempts = attempts + 1, updated_at = ? WHERE batch = ? AND key = ?",
                             [(owner, run_id, now, name, row[0]) for row, run_id in zip(rows, run_ids, strict=False)])
            keys = [row[0] for row in rows]
            return self._select(conn, name, keys)

    def _select(self, conn: sqlite3.Connection, name: str, keys: Sequence[str]) -> builtins.list[BatchItem]:
        found: builtins.list[BatchItem] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            found += [_item(row) for row in conn.execute(
                f"SELECT * FROM batch_items WHERE batch = ? AND key IN ({marks}) ORDER BY position", (name, *chunk))]
        return sorted(found, key=lambda item: item.position)

    def write(self, name: str, owner: str, changes: Iterable[tuple[str, dict[str, Any]]]) -> int:
        applied = 0
        now = time.time()
        with self.store.transaction() as conn:
            for key, fields in changes:
                unknown = set(fields) - WRITABLE
                if unknown:
                    raise StoreError(f"Cannot write {sorted(unknown)} of a batch item.")
                values = {k: json.dumps(v) if k in _JSON and v is not None else v for k, v in fields.items()}
                status = fields.get("status")
                if status in FINAL_STATUSES or status == "pending":
                    values["owner"] = None
                assignments = ", ".join(f"{k} = ?" for k in values)
                applied += conn.execute(
                    f"UPDATE batch_items SET {assignments}, updated_at = ? WHERE batch = ? AND key = ? AND owner = ?",
                    (*values.values(), now, name, key, owner)).rowcount
        return applied

    def heartbeat(self, name: str, owner: str, lease: float) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO batch_owners VALUES (?, ?, ?)", (name, owner, time.time() + lease))

    def release(self, name: str, owner: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO batch_owners VALUES (?, ?, 0)", (name, owner))

    def adopt(self, name: str, owner: str) -> builtins.list[BatchItem]:
        now = time.time()
        with self.store.transaction() as conn:
            owners = [row[0] for row in conn.execute(
                "SELECT DISTINCT owner FROM batch_items WHERE batch = ? AND owner IS NOT NULL AND owner != ?",
                (name, owner))]
            leases = dict(conn.execute("SELECT owner, expires_at FROM batch_owners WHERE batch = ?", (name,)))
            gone = [o for o in owners if owner_alive(o) is False or leases.get(o, 0.0) < now]
            keys: builtins.list[str] = []
            for dead in gone:
                keys += [row[0] for row in conn.execute(
                    "SELECT key FROM batch_items WHERE batch = ? AND owner = ?", (name, dead))]
                conn.execute("UPDATE batch_items SET owner = ?, updated_at = ? WHERE batch = ? AND owner = ?",
                             (owner, now, name, dead))
                conn.execute("DELETE FROM batch_owners WHERE batch = ? AND owner = ?", (name, dead))
            return self._select(conn, name, keys)

    def items(self, name: str, statuses: Iterable[str] | None = None) -> builtins.list[BatchItem]:
        sql, params = "SELECT * FROM batch_items WHERE batch = ?", [name]
        if statuses is not None:
            wanted = sorted(set(statuses))
            sql += f" AND status IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        with self.store.transaction() as conn:
            return [_item(row) for row in conn.execute(sql + " ORDER BY position", params)]

    def reset(self, name: str, statuses: Iterable[str]) -> int:
        wanted = sorted(set(statuses) & FINAL_STATUSES)
        if not wanted:
            return 0
        with self.store.transaction() as conn:
            conn.execute("UPDATE batches SET state = 'open' WHERE name = ?", (name,))
            return conn.execute(
                f"UPDATE batch_items SET status = 'pending', attempts = 0, error = NULL, updated_at = ? "
                f"WHERE batch = ? AND owner IS NULL AND status IN ({', '.join('?' for _ in wanted)})",
                (time.time(), name, *wanted)).rowcount

    def cancel(self, name: str) -> int:
        with self.store.transaction() as conn:
            conn.execute("UPDATE batches SET state = 'cancelled' WHERE name = ?", (name,))
            error = json.dumps({"code": "cancelled", "message": "The batch was cancelled before this item started."})
            return conn.execute("UPDATE batch_items SET status = 'cancelled', error = ?, updated_at = ? "
                                "WHERE batch = ? AND status = 'pending'", (error, time.time(), name)).rowcount

    def delete(self, name: str) -> None:
        with self.store.transaction() as conn:
            for table, column in (("batch_items", "batch"), ("batch_owners", "batch"), ("batches", "name")):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))
