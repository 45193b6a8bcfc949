"""Fault specifications: the interruptions the server reproduces on demand.

A fault spec is a short string of ``key=value`` pairs separated by commas, semicolons or spaces, for example
``"drop_after=40,drops=2"`` or ``"http_429=2 retry_after=0.5"``. The same keys work everywhere:

* in a create request's ``metadata`` as ``{"mock_faults": "..."}``: the faults belong to that response for its whole
  life (HTTP-error keys then fail the *follow-up* requests about it: polls, stream resumes, cancels);
* in an ``X-Mock-Faults`` request header: stream faults apply to the response the request creates; HTTP-error keys
  fail the first K identical requests (same method, path, query, body and header), so a retrying client meets K
  failures and then succeeds;
* server-wide, from ``--faults``/flags or ``PUT /mock/faults``: stream faults apply to every response created while
  they are set; HTTP-error keys fail the next K requests of any kind.

The ``*_rate=P`` keys make a fraction ``P`` of responses, stream connections or requests meet a fault, for large
batch tests. Which ones is decided by a hash of the response id (and the connection's number), so a response that
fails does so on every poll and after a restart; ``http_429_rate`` draws afresh for every request, so retries get
through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .limits import MAX_SECONDS

#: key -> (type, help). The order is the order of ``--help`` and of :func:`describe_faults`.
FAULT_KEYS: dict[str, tuple[type, str]] = {
    "drop_after": (int, "drop the connection after N events of a stream"),
    "drops": (int, "how many stream connections of a response drop (default 1)"),
    "fail_at": (int, "fail the response at event N with response.failed"),
    "incomplete_at": (int, "end the response as incomplete after N text deltas"),
    "http_429": (int, "answer 429 with Retry-After to the next K requests"),
    "http_500": (int, "answer 500 to the next K requests"),
    "http_503": (int, "answer 503 to the next K requests"),
    "retry_after": (float, "seconds sent in Retry-After/retry-after-ms with 429/503 (default 1)"),
    "stall_after": (int, "stall a stream connection after N events (default 0)"),
    "stall": (float, "seconds a stream connection stays silent"),
    "stalls": (int, "how many stream connections of a response stall (default 1)"),
    "slow_first_token": (float, "seconds before the first text delta"),
    "expire_stream": (bool, "the resume window has expired: GET ?stream=true answers 400"),
    "split": (int, "write SSE frames in pieces of N bytes (cuts inside multi-byte characters)"),
    "fail_rate": (float, "fraction P of responses fail (as fail_at, at an event picked from the response id)"),
    "drop_rate": (float, "fraction P of stream connections drop partway (as drop_after, at a picked event)"),
    "http_429_rate": (float, "fraction P of requests are answered 429 with Retry-After (as http_429)"),
}

#: The keys whose value is a probability, 0 <= P <= 1.
RATE_KEYS = frozenset({"fail_rate", "drop_rate", "http_429_rate"})

_ALIASES = {"ttft": "slow_first_token", "rate_limit": "http_429", "expired": "expire_stream"}
_SEPARATORS = re.compile(r"[,;\s]+")


@dataclass(frozen=True)
class FaultSpec:
    """A parsed fault spec; every field is off (``None``/``0``/``False``) unless set."""

    drop_after: int | None = None
    drops: int = 1
    fail_at: int | None = None
    incomplete_at: int | None = None
    http_429: int = 0
    http_500: int = 0
    http_503: int = 0
    retry_after: float = 1.0
    stall_after: int = 0
    stall: float = 0.0
    stalls: int = 1
    slow_first_token: float | None = None
    expire_stream: bool = False
    split: int | None = None
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    http_429_rate: float = 0.0

    @classmethod
    def parse(cls, text: str | None, *, param: str = "mock_faults") -> FaultSpec:
        """Parse ``text``; an unknown key or a bad value raises a 400 naming it."""
        if text is None or not text.strip():
            return cls()
        values: dict[str, Any] = {}
        for part in _SEPARATORS.split(text.strip()):
            if not part:
                continue
            key, sep, raw = part.partition("=")
            key = _ALIASES.get(key.strip(), key.strip())
            if key not in FAULT_KEYS:
                known = ", ".join(FAULT_KEYS)
                raise bad_request(f"Unknown mock fault '{key}' in {param}. Known faults: {known}.", param=param)
            values[key] = _convert(key, raw.strip() if sep else None, param)
        return cls(**values)

    def merged(self, other: FaultSpec) -> FaultSpec:
        """This spec with every field that ``other`` sets taken from ``other``."""
        default = FaultSpec()
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(self)
            if getattr(other, f.name) != getattr(default, f.name)
        }
        return dataclasses.replace(self, **changes)

    @property
    def http_errors(self) -> dict[int, int]:
        """``{status: count}`` for the HTTP-error faults that are set."""
        return {s: n for s, n in ((429, self.http_429), (500, self.http_500), (503, self.http_503)) if n > 0}

    def without_http_errors(self) -> FaultSpec:
        return dataclasses.replace(self, http_429=0, http_500=0, http_503=0, http_429_rate=0.0)

    def fail_index(self, response_id: str, steps: int) -> int | None:
        """The step at which a response of ``steps`` steps fails: ``fail_at``, else one ``fail_rate`` picks."""
        if self.fail_at is not None:
            return max(1, self.fail_at)
        if self.fail_rate > 0 and steps > 1 and draw(response_id, "fail") < self.fail_rate:
            return 1 + int(draw(response_id, "fail_at") * (steps - 1))  # 1 .. steps-1: after response.created
        return None

    def drop_after_for(self, response_id: str, connection: int, events: int) -> int | None:
        """How many events stream connection number ``connection`` (of ``events`` to send) sends before it drops.

        ``drop_after`` counts for the first ``drops`` connections; otherwise ``drop_rate`` picks connections and a
        point in each that leaves at least one event sent and one unsent, so a resuming client always progresses.
        """
        if self.drop_after is not None and connection < self.drops:
            return self.drop_after
        if self.drop_rate > 0 and events > 1 and draw(response_id, "drop", str(connection)) < self.drop_rate:
            return 1 + int(draw(response_id, "drop_after", str(connection)) * (events - 1))
        return None

    def __str__(self) -> str:
        default = FaultSpec()
        parts = []
        for name in FAULT_KEYS:
            value = getattr(self, name)
            if value != getattr(default, name):
                parts.append(name if value is True else f"{name}={_number(value)}" if isinstance(value, float)
                             else f"{name}={value}")
        return ",".join(parts)

    def is_empty(self) -> bool:
        return str(self) == ""


def draw(*parts: str) -> float:
    """A number in [0, 1) fixed by ``parts``: the same response always meets the same ``*_rate`` faults."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _number(value: float) -> str:
    """``value`` short (``0.5``, ``2``) but exact, so that a spec saved as text reads back the same."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _convert(key: str, raw: str | None, param: str) -> Any:
    kind, _ = FAULT_KEYS[key]
    if kind is bool:
        if raw is None or raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise bad_request(f"Invalid value for mock fault '{key}' in {param}: expected true or false.", param=param)
    if raw is None:
        raise bad_request(f"Mock fault '{key}' in {param} needs a value, as in '{key}=3'.", param=param)
    try:
        value = kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise bad_request(
            f"Invalid value for mock fault '{key}' in {param}: expected {expected}, got '{raw}'.", param=param
        ) from None
    if key in RATE_KEYS and not 0 <= value <= 1:  # also refuses nan
        raise bad_request(f"Invalid value for mock fault '{key}' in {param}: expected a probability between 0 and 1, "
                          f"got '{raw}'.", param=param)
    if kind is float and not math.isfinite(value):
        raise bad_request(f"Invalid value for mock fault '{key}' in {param}: expected a finite number of seconds, "
                          f"got '{raw}'.", param=param)
    if value < 0 or (key in ("split", "drops", "stalls") and value == 0):
        raise bad_request(f"Invalid value for mock fault '{key}' in {param}: it must be positive.", param=param)
    if kind is float and value > MAX_SECONDS:
        raise bad_request(f"Invalid value for mock fault '{key}' in {param}: at most {MAX_SECONDS:g} seconds, got "
                          f"'{raw}'.", param=param)
    return value


def describe_faults() -> str:
    """One line per fault key, for ``--help`` and error messages."""
    return "\n".join(f"  {key:<17} {help}" for key, (_, help) in FAULT_KEYS.items())
