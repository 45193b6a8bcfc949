"""A fast, incremental server-sent-events decoder for the Responses API stream.

Chunks may end anywhere, inside a line or inside a multi-byte character: the bytes up to the last complete event
are decoded in one go, so a cut character waits in the tail for the rest of its bytes. Only the ``data`` field is
kept, since the JSON's ``type`` repeats the event name. Splitting uses C-level ``find``/``split``, never a Python loop
over lines, and JSON goes straight to the C scanner.
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any

__all__ = ["SSEDecoder"]

_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # C scanner, no wrappers


def _loads(text: str) -> Any:
    """``json.loads`` for a document with no leading whitespace, minus three Python calls and two regex matches."""
    try:
        return _scan_once(text, 0)[0]
    except StopIteration:
        return json.loads(text)  # raises JSONDecodeError with a position


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
        if not chunk:
            return []
        parts = self._parts
        if parts:
            if b"\n\n" not in chunk and not (chunk[0] == 10 and parts[-1].endswith(b"\n")):
                parts.append(chunk)  # still inside one event: no copying until it completes
                return []
            parts.append(chunk)
            chunk = b"".join(parts)
            parts.clear()
        cut = chunk.rfind(b"\n\n")
        if cut < 0:
            parts.append(chunk)
            return []
        if cut + 2 < len(chunk):
            parts.append(chunk[cut + 2:])
        # Everything before the last blank line is whole events, so it decodes in one go: a multi-byte character
        # can only be cut in the incomplete tail kept for later.
        events: list[dict[str, Any]] = []
        decode = self._decode_frame
        for frame in chunk[:cut].decode("utf-8", "replace").split("\n\n"):
            decode(frame, events)
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
    def _decode_frame(frame: str, events: list[dict[str, Any]]) -> None:
        start = frame.find("data:")
        if start < 0:
            return  # a comment, a keep-alive, or an event without data
        if (start == 0 or frame[start - 1] == "\n") and frame.find("\n", start) < 0:
            # The common case: one data line, last in the frame.
            events.append(_loads(frame[start + 6:] if frame.startswith(" ", start + 5) else frame[start + 5:]))
            return
        lines = [line[5:] for line in frame.split("\n") if line.startswith("data:")]
        if lines:
            events.append(_loads("\n".join(line[1:] if line.startswith(" ") else line for line in lines)))
