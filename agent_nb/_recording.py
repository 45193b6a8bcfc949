"""Recording what a run receives, to replay it offline later (``python -m mock_server --replay FILE``).

``options={"record": "run.jsonl"}`` (or ``AGENT_NB_RECORD=DIR``, one file per run) writes JSON lines: a ``request``
line for each response the run creates (the request body and the endpoint's base URL: never a key or a header),
then an ``event`` line for each event received, with the seconds since the recording started, once per event even
when a resumed stream replays some. The file is private to its owner, like the run store.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._home import make_private_dirs

__all__ = ["RunRecording", "recording_for"]


class RunRecording:
    """One run's recording file, appended to as the run goes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        make_private_dirs(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._started = time.monotonic()
        self._seen: set[tuple[str | None, int]] = set()
        self._lock = threading.Lock()

    def _write(self, line: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._file.flush()

    def request(self, body: Mapping[str, Any], base_url: str) -> None:
        """A response is about to be created with this body."""
        self._write({"kind": "request", "t": round(time.monotonic() - self._started, 6), "endpoint": base_url,
                     "body": dict(body)})

    def event(self, event: Mapping[str, Any], response_id: str | None) -> None:
        """An event arrived (a repeat of one already written, from a replayed stream, is skipped)."""
        seq = event.get("sequence_number")
        if isinstance(seq, int):
            key = (response_id or _response_id(event), seq)
            if key in self._seen:
                return
            self._seen.add(key)
        self._write({"kind": "event", "t": round(time.monotonic() - self._started, 6),
                     "response_id": response_id or _response_id(event), "event": dict(event)})

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _response_id(event: Mapping[str, Any]) -> str | None:
    response = event.get("response")
    return response.get("id") if isinstance(response, dict) else None


def recording_for(option: Any, run_id: str | None) -> RunRecording | None:
    """The recording a new run writes: ``option`` (a file path), else ``$AGENT_NB_RECORD`` (a directory), else none."""
    if option:
        return RunRecording(Path(str(option)))
    directory = os.environ.get("AGENT_NB_RECORD")
    if directory:
        return RunRecording(Path(directory) / f"{run_id or 'run_' + str(int(time.time() * 1000))}.jsonl")
    return None
