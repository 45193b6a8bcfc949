"""The run store's runs and batches as tables: HTML in a notebook, aligned text elsewhere, every cell escaped."""

from __future__ import annotations

import html
import time

from .._store import RunRecord
from .._store._ledger import BatchInfo

__all__ = ["BatchTable", "RunTable"]


class RunTable:
    """The store's runs as a table (HTML in a notebook, text elsewhere); a lost run says why."""

    def __init__(self, records: list[RunRecord], status: str | None = None, *, note: str | None = None,
                 empty: str | None = None) -> None:
        self.records = records
        self.status = status
        self.note = note  # a line under the table (how many of the runs belong to batches, say)
        self.empty = empty

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        now = time.time()
        return [(r.name or r.prompt[:40].replace("\n", " "), _status(r), _age(now - r.created_at), f"{len(r.text):,}",
                 r.run_id) for r in self.records]

    def _empty(self) -> str:
        if self.empty:
            return self.empty
        return f"No {self.status} runs in the store." if self.status else "No runs in the store yet."

    def __repr__(self) -> str:
        if not self.records:
            return self._empty()
        header = ("name", "status", "age", "length", "run id")
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
        return "\n".join(lines + ([self.note] if self.note else []))

    def _repr_html_(self) -> str:
        if not self.records:
            return f"<p>{self._empty()}</p>"
        head = "".join(f"<th>{h}</th>" for h in ("name", "status", "age", "length", "run id"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows())
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


class BatchTable:
    """The store's batches, newest first, with how many items are done, failed, running and waiting."""

    HEADER = ("name", "state", "done", "failed", "running", "waiting", "total", "age")

    def __init__(self, batches: list[BatchInfo]) -> None:
        self.batches = batches

    def rows(self) -> list[tuple[str, ...]]:
        now = time.time()
        return [(b.name, _batch_state(b), *(f"{_count(b, *s):,}" for s in _BATCH_COUNTS), f"{b.total:,}",
                 _age(now - b.created_at)) for b in self.batches]

    def __repr__(self) -> str:
        if not self.batches:
            return "No batches in the store yet."
        rows = [self.HEADER, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)

    def _repr_html_(self) -> str:
        if not self.batches:
            return "<p>No batches in the store yet.</p>"
        head = "".join(f"<th>{h}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


#: The ledger's item statuses each column of a BatchTable adds up.
_BATCH_COUNTS = (("completed", "incomplete"), ("failed",), ("claimed", "submitting", "running"), ("pending",))


def _count(info: BatchInfo, *statuses: str) -> int:
    return sum(info.counts.get(status, 0) for status in statuses)


def _batch_state(info: BatchInfo) -> str:
    """``cancelled``, ``completed`` (every item has ended) or ``unfinished`` (worked here or elsewhere, or not)."""
    if info.state == "cancelled":
        return "cancelled"
    return "unfinished" if info.unfinished else "completed"


def _status(record: RunRecord) -> str:
    if record.status == "lost" and record.error:
        code = record.error.get("code")
        why = {"run_not_found": "the service no longer has it", "server_unreachable": "its server is gone"}
        return f"lost: {why.get(str(code), code)}"
    return record.status


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
