"""A fast, incremental server-sent-events decoder for the Responses API stream.

Chunks may end anywhere, inside a line or inside a multi-byte character: bytes are only decoded once a whole event
has arrived (JSON is decoded from bytes), and only the ``data`` field is kept, since the JSON's ``type`` repeats the
event name. Searching is done on bytes with C-level ``find``/``split``, never line by line in Python.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SSEDecoder"]

_loads = json.loads


class SSEDecoder:
    """Feed it raw bytes; it returns the JSON payload of every event completed so far."""

    __slots__ = ("_parts", "_pending_cr")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """Decode ``chunk``; return the events it completes, in order."""
        if b"\r" in chunk or self._pending_cr:
            chunk = self._normalise_newlines(chunk)
        events: list[dict[str, Any]] = []
        if not chunk:
            return events
        if self._parts:
            previous = self._parts[-1]
            if previous.endswith(b"\n") and chunk.startswith(b"\n"):
                cut = 0  # the blank line straddles the two chunks
                frame = b"".join(self._parts)[:-1]
                chunk = chunk[1:]
            else:
                cut = chunk.find(b"\n\n")
                if cut < 0:
                    self._parts.append(chunk)
                    return events
                frame = b"".join(self._parts) + chunk[:cut]
                chunk = chunk[cut + 2:]
            self._parts = []
            self._decode_frame(frame, events)
        frames = chunk.split(b"\n\n")
        rest = frames.pop()
        for frame in frames:
            self._decode_frame(frame, events)
        if rest:
            self._parts.append(rest)
        return events

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole event."""
        return sum(len(p) for p in self._parts)

    def _normalise_newlines(self, chunk: bytes) -> bytes:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    @staticmethod
    def _decode_frame(frame: bytes, events: list[dict[str, Any]]) -> None:
        start = frame.find(b"data:")
        if start < 0:
            return  # a comment, a keep-alive, or an event without data
        if (start == 0 or frame[start - 1] == 10) and frame.find(b"\n", start) < 0:
            data = frame[start + 5:]  # the common case: one data line, last in the frame
        else:
            lines = [line[5:] for line in frame.split(b"\n") if line.startswith(b"data:")]
            data = b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)
            if not lines:
                return
            events.append(_loads(data))
            return
        if data.startswith(b" "):
            data = data[1:]
        events.append(_loads(data))
