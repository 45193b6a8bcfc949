"""A batch's results: one row per item, with the text from the item's run record, and their exports."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, StoredRunNotFound
from .._store import RunStore
from .._store._ledger import BatchItem

__all__ = ["BatchResult", "results_of", "to_jsonl", "to_pandas"]


@dataclass(frozen=True)
class BatchResult:
    """How one item ended (or where it is): ``status`` is the item's (``completed``, ``failed`` … or ``running``
    while it is unfinished), ``text`` its run's output, ``error`` the reason it failed (one sentence) and
    ``error_code`` the service's or agent-nb's code for it."""

    key: str
    status: str
    text: str
    error: str | None
    error_code: str | None
    usage: dict[str, Any] | None
    run_id: str | None
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def results_of(items: Sequence[BatchItem], store: RunStore) -> list[BatchResult]:
    texts: dict[str, str] = {}
    for item in items:
        if item.run_id is None or item.status not in ("completed", "incomplete", "failed", "cancelled", "running"):
            continue
        with contextlib.suppress(StoredRunNotFound):
            texts[item.run_id] = store.get(item.run_id).text
    return [BatchResult(key=item.key, status=item.status, text=texts.get(item.run_id or "", ""),
                        error=(item.error or {}).get("message"), error_code=(item.error or {}).get("code"),
                        usage=item.usage, run_id=item.run_id, attempts=item.attempts) for item in items]


def to_pandas(results: Sequence[BatchResult]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ConfigurationError("to_pandas() needs pandas: pip install pandas (results() gives the rows without "
                                 "it).") from None
    frame = pd.DataFrame([r.to_dict() for r in results],
                         columns=["key", "status", "text", "error", "error_code", "usage", "run_id", "attempts"])
    return frame.set_index("key")


def to_jsonl(results: Sequence[BatchResult], path: str | Path) -> Path:
    target = Path(path)
    temporary = target.with_name(target.name + ".partial")
    with temporary.open("w", encoding="utf-8") as out:
        for result in results:
            out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    temporary.replace(target)  # a reader never sees half a file
    return target
