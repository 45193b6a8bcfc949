"""The run store: background runs recorded so that a new process (a restarted kernel) can find and resume them.

:class:`SQLiteRunStore` is the default, in ``~/.agent_nb``; :class:`RedisRunStore` shares runs between machines.
:class:`CheckpointWriter` records a stream's progress in batches, so recording costs the stream almost nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ._base import RunStore
from ._checkpoints import CheckpointWriter
from ._record import TERMINAL, RunRecord, new_run_id
from ._redis import RedisRunStore
from ._sqlite import SQLiteRunStore, default_path

__all__ = [
    "TERMINAL",
    "CheckpointWriter",
    "RedisRunStore",
    "RunRecord",
    "RunStore",
    "SQLiteRunStore",
    "default_store",
    "new_run_id",
]

_defaults: dict[Path, SQLiteRunStore] = {}
_defaults_lock = threading.Lock()


def default_store() -> SQLiteRunStore:
    """The SQLite store at ``$AGENT_NB_HOME/runs.sqlite3``: one per resolved path, shared by the whole process.

    The path is read from the environment on every call, so changing ``AGENT_NB_HOME`` takes effect; a store that
    was closed is opened again.
    """
    path = default_path().resolve()
    with _defaults_lock:
        store = _defaults.get(path)
        if store is None or store.closed:
            store = _defaults[path] = SQLiteRunStore(path)
        return store
