"""Serving recorded runs: what agent-nb's ``options={"record": ...}`` wrote, played back as background responses.

``--replay FILE|DIR`` loads every recording (``*.jsonl``). A create is matched to the recorded response whose request
had the same model and the same last user message; failing that, recordings are served in order (cycling). The
recorded events are streamed again at the recorded pace (``--replay-speed 10`` plays ten times faster, ``0`` as fast
as possible), under the new response's id, resumable with ``starting_after`` like any response, and every stream and
HTTP fault applies to them (``fail_at``, ``fail_rate`` and ``incomplete_at`` do not: the recording says how the run
ended).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultSpec
from .generation import GenerationOptions
from .items import Step
from .records import ResponseRecord
from .runs import Run
from .validation import item_text

__all__ = ["Recording", "ReplayLibrary", "ReplayRun", "load_recordings"]



@dataclass
class Recording:
    """One recorded response: the request that created it and its events with their times."""

    request: dict[str, Any]
    response_id: str
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def prompt(self) -> str:
        return _last_user_text(self.request.get("input"))


def _last_user_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        for item in reversed(value):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                return (content if isinstance(content, str) else item_text(item)).strip()
    return ""


def load_recordings(path: str | Path) -> list[Recording]:
    """The recordings in a file, or in every ``*.jsonl`` file of a directory (ValueError names a damaged line)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    recordings: list[Recording] = []
    for file in files:
        by_id: dict[str, Recording] = {}
        request: dict[str, Any] | None = None
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                kind = entry["kind"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{file}, line {number}: not a recording line (JSON with a 'kind').") from None
            if kind == "request":
                request = dict(entry.get("body") or {})
            elif kind == "event":
                response_id = entry.get("response_id") or ""
                recording = by_id.get(response_id)
                if recording is None:
                    recording = by_id[response_id] = Recording(request or {}, response_id)
                    recordings.append(recording)
                    request = None
                recording.events.append((float(entry.get("t", 0.0)), entry["event"]))
    if not recordings:
        raise ValueError(f"{path}: no recorded responses in it.")
    return recordings


class ReplayLibrary:
    """The recordings a server can replay, matched to create requests."""

    def __init__(self, recordings: list[Recording], speed: float = 1.0) -> None:
        self.recordings = recordings
        self.speed = speed
        self._next = 0

    def match(self, model: str, input_value: Any) -> Recording:
        prompt = _last_user_text(input_value)
        for recording in self.recordings:
            if recording.prompt() == prompt and recording.request.get("model", model) == model:
                return recording
        recording = self.recordings[self._next % len(self.recordings)]
        self._next += 1
        return recording


class ReplayRun(Run):
    """A run whose events are a recording's, under the new response's id."""

    def __init__(self, record: ResponseRecord, recording: Recording, speed: float, faults: FaultSpec,
                 options: GenerationOptions, **kwargs: Any) -> None:
        times = [t for t, _ in recording.events]
        # Each step's kind is its recorded event's type, which is what Run._emit names the frame with.
        steps = [Step(str(event.get("type", "")), delay=(times[i] - times[i - 1]) / speed if i and speed > 0
                      else 0.0) for i, (_, event) in enumerate(recording.events)]
        self._recorded = [json.dumps(event, ensure_ascii=False, separators=(",", ":")).replace(
            recording.response_id, record.id) if recording.response_id else json.dumps(event)
            for _, event in recording.events]
        self._response: dict[str, Any] | None = None
        super().__init__(record, steps, faults, options, **kwargs)

    def _apply(self, seq: int, step: Step) -> str:
        data = self._recorded[seq]
        event = json.loads(data)
        event["sequence_number"] = seq
        kind = event.get("type", "")
        if kind == "response.output_text.delta":
            self._parts.append(event.get("delta") or "")
        response = event.get("response")
        if isinstance(response, dict):
            self._response = response
            status = response.get("status")
            if status in ("completed", "failed", "cancelled", "incomplete"):
                self.sync_text()
                self.record.finish(status)
            elif isinstance(status, str):
                self.record.status = status
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))

    def snapshot(self) -> dict[str, Any]:
        self.sync_text()
        if self._response is None:
            return self.record.to_json()
        return {**self._response, "status": self.record.status}
