"""Continuation tokens: a small, versioned, printable value that says where a run's stream stopped."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidContinuationToken

__all__ = ["ContinuationToken"]

_PREFIX = "anb1."
_RESPONSE_ID = re.compile(r"[A-Za-z0-9_\-]{1,200}")  # used with fullmatch: "$" would let a trailing newline in
_SEQUENCE = re.compile(r"-1|0|[1-9][0-9]{0,18}")  # a printed token's number: -1, or 0 .. 10**19 - 1
_MAX_SEQUENCE = 2**63 - 1


@functools.total_ordering
@dataclass(frozen=True)
class ContinuationToken:
    """Where to pick a background run up again: its ``response_id`` and the last ``sequence_number`` received.

    Resuming continues at ``sequence_number + 1``: nothing repeated, nothing skipped. ``sequence_number`` is
    ``None`` for a token that knows only the response (such as Agent Framework's), which replays from the start.
    ``str(token)`` is a short string (``anb1.…``) that :meth:`parse` reads back; it carries no secret. Tokens of one
    response order by position, a token without a sequence number first (it resumes from the very start).
    """

    response_id: str
    sequence_number: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.response_id, str) or not _RESPONSE_ID.fullmatch(self.response_id):
            raise InvalidContinuationToken(f"A continuation token needs a response id such as 'resp_…', got "
                                           f"{self.response_id!r:.80}.")
        seq = self.sequence_number
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or not -1 <= seq <= _MAX_SEQUENCE):
            raise InvalidContinuationToken(f"A continuation token's sequence number must be an integer from -1 to "
                                           f"2**63 - 1, got {seq!r:.40}.")

    def _position(self) -> tuple[str, int]:
        return self.response_id, -2 if self.sequence_number is None else self.sequence_number

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ContinuationToken):
            return NotImplemented
        return self._position() < other._position()

    @property
    def starting_after(self) -> int | None:
        """The ``starting_after`` query value that resumes right after this token."""
        return self.sequence_number

    def advanced(self, sequence_number: int) -> ContinuationToken:
        return ContinuationToken(self.response_id, sequence_number)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (also Agent Framework's shape, plus the sequence number)."""
        return {"response_id": self.response_id, "sequence_number": self.sequence_number}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        seq = "" if self.sequence_number is None else str(self.sequence_number)
        payload = f"{self.response_id}:{seq}".encode()
        checked = payload + zlib.crc32(payload).to_bytes(4, "big")
        return _PREFIX + base64.urlsafe_b64encode(checked).decode().rstrip("=")

    def __repr__(self) -> str:
        return f"ContinuationToken(response_id={self.response_id!r}, sequence_number={self.sequence_number!r})"

    @classmethod
    def parse(cls, value: object) -> ContinuationToken:
        """Read a token from its string, its dict or JSON, or an Agent Framework token (``{"response_id": …}``)."""
        if isinstance(value, ContinuationToken):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(_PREFIX):
                return cls._from_string(text)
            if text.startswith("{"):
                try:
                    data = json.loads(text)
                except (ValueError, RecursionError):
                    raise InvalidContinuationToken("This continuation token is not valid JSON; it may have been "
                                                   "cut short when copied.") from None
                if not isinstance(data, Mapping):
                    raise InvalidContinuationToken("A JSON continuation token must be an object with a "
                                                   "'response_id'.")
                return cls._from_mapping(data)
            if text.startswith("anb"):
                raise InvalidContinuationToken(f"Unsupported continuation token version in {text[:8]!r}; this "
                                               "agent-nb reads 'anb1.' tokens.")
            raise InvalidContinuationToken("This is not a continuation token: expected a string starting with "
                                           "'anb1.' (copied from a run) or a dict with a 'response_id'.")
        if isinstance(value, Mapping):
            return cls._from_mapping(value)
        response_id = getattr(value, "response_id", None)  # Agent Framework's token objects
        if isinstance(response_id, str):
            return cls(response_id, getattr(value, "sequence_number", None))
        raise InvalidContinuationToken(f"Cannot read a continuation token from a {type(value).__name__}.")

    @classmethod
    def _from_string(cls, text: str) -> ContinuationToken:
        body = text[len(_PREFIX):]
        damaged = InvalidContinuationToken("This continuation token is damaged or truncated; copy it again in full.")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise damaged from None
        payload, checksum = raw[:-4], raw[-4:]
        if len(raw) < 6 or zlib.crc32(payload).to_bytes(4, "big") != checksum:
            raise damaged
        try:
            decoded = payload.decode()
        except UnicodeDecodeError:
            raise damaged from None
        response_id, sep, seq = decoded.rpartition(":")
        if not sep or not _RESPONSE_ID.fullmatch(response_id) or (seq and not _SEQUENCE.fullmatch(seq)):
            raise damaged
        try:
            return cls(response_id, int(seq) if seq else None)
        except InvalidContinuationToken:
            raise damaged from None

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any]) -> ContinuationToken:
        response_id = data.get("response_id", data.get("responseId"))
        if not isinstance(response_id, str):
            raise InvalidContinuationToken("A continuation token dict needs a string 'response_id'.")
        seq = data.get("sequence_number", data.get("sequenceNumber"))
        return cls(response_id, seq)
