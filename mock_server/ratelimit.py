"""Per-key rate limits that behave like the service's: requests and tokens per minute, as token buckets.

Each API key (the bearer token; requests without one share an anonymous bucket) has two budgets:

* **requests per minute** (RPM): every ``/v1/...`` request costs 1 (``/mock/...`` control requests never count);
* **tokens per minute** (TPM): only creates (``POST /v1/responses``) cost tokens, an estimate of
  ``ceil((len(JSON of input) + len(instructions)) / 4)`` (at least 1) plus ``max_output_tokens`` if given, else the
  server's reply length (``--tokens``). A create answered with an error gets its tokens back.

A bucket holds up to the per-minute budget and refills continuously at budget/60 per second. Every ``/v1`` answer
carries ``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` (``-requests`` and
``-tokens``, for the budgets that are set; the reset is the time until the bucket is full again, as ``1s``,
``6m0s``, ``120ms``). A spent budget answers 429 ``rate_limit_exceeded`` with ``retry-after`` (whole seconds, rounded
up) and ``retry-after-ms``; the refused request consumes nothing and reaches nothing behind it. Keys are kept only as
SHA-256 digests and shown as ``sha256:`` plus 8 hex digits; the least recently used are forgotten beyond
``max_keys``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, bad_request, invalid_type

__all__ = ["RateLimitMiddleware", "RateLimiter", "create_cost", "format_duration", "parse_rate_limits"]

ANONYMOUS = "anonymous"
#: The largest per-minute budget accepted.
MAX_BUDGET = 10**12
_PARAMS = ("requests_per_minute", "tokens_per_minute")


def format_duration(seconds: float) -> str:
    """``seconds`` as the service writes durations (Go's): ``0s``, ``120ms``, ``1s``, ``1m30.5s``, ``6m0s``, ``1h0m0s``.

    Rounded up to the millisecond, so that waiting that long is always enough.
    """
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def create_cost(body: Any, output_tokens: int) -> int:
    """The tokens a create costs: the estimated input plus ``max_output_tokens`` (else ``output_tokens``)."""
    if not isinstance(body, dict):
        return 1 + output_tokens
    chars = 0
    if body.get("input") is not None:
        with contextlib.suppress(ValueError, RecursionError):
            chars += len(json.dumps(body["input"], ensure_ascii=False))
    if isinstance(body.get("instructions"), str):
        chars += len(body["instructions"])
    requested = body.get("max_output_tokens")
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        output_tokens = requested
    return max(1, math.ceil(chars / 4)) + output_tokens


class _Bucket:
    """A token bucket: up to ``capacity``, refilling ``capacity / 60`` per second."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / 60.0
        self.level = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, cost: int) -> float:
        """Seconds until ``cost`` is available (0 if it is now)."""
        return max(0.0, (cost - self.level) / self.rate)

    def headers(self, name: str) -> list[tuple[bytes, bytes]]:
        full_in = (self.capacity - self.level) / self.rate
        return [(b"x-ratelimit-limit-" + name.encode(), str(self.capacity).encode()),
                (b"x-ratelimit-remaining-" + name.encode(), str(max(0, math.floor(self.level))).encode()),
                (b"x-ratelimit-reset-" + name.encode(), format_duration(full_in).encode())]


@dataclass
class _Budgets:
    requests: _Bucket | None
    tokens: _Bucket | None


class RateLimiter:
    """The budgets of every key, and the limits they are held to (``None`` is unlimited).

    Args:
        requests_per_minute: the RPM budget of each key.
        tokens_per_minute: the TPM budget of each key.
        output_tokens: the reply length a create without ``max_output_tokens`` is charged for.
        max_keys: how many keys are tracked; the least recently used are forgotten (their budget starts full).
        clock: seconds, monotonic (a test can pass its own).
    """

    def __init__(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None, *,
                 output_tokens: Callable[[], int] = lambda: 0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.output_tokens = output_tokens
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Budgets] = OrderedDict()
        self.requests_per_minute: int | None = None
        self.tokens_per_minute: int | None = None
        self.configure(requests_per_minute, tokens_per_minute)

    @property
    def enabled(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    def configure(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        """Set the limits (0 or ``None`` is unlimited); every key starts again with a full budget."""
        self.requests_per_minute = requests_per_minute or None
        self.tokens_per_minute = tokens_per_minute or None
        self._keys.clear()

    def _budgets(self, key: str, now: float) -> _Budgets:
        budgets = self._keys.get(key)
        if budgets is None:
            budgets = self._keys[key] = _Budgets(
                _Bucket(self.requests_per_minute, now) if self.requests_per_minute else None,
                _Bucket(self.tokens_per_minute, now) if self.tokens_per_minute else None)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        for bucket in (budgets.requests, budgets.tokens):
            if bucket is not None:
                bucket.refill(now)
        return budgets

    def charge(self, key: str, tokens: int = 0) -> None:
        """Take one request and ``tokens`` from ``key``'s budgets, or raise the 429 (taking nothing)."""
        budgets = self._budgets(key, self._clock())
        for name, bucket, cost in (("requests", budgets.requests, 1), ("tokens", budgets.tokens, tokens)):
            if bucket is not None and cost > 0 and bucket.level < cost:
                raise self._refusal(name, bucket, cost, budgets)
        if budgets.requests is not None:
            budgets.requests.level -= 1
        if budgets.tokens is not None:
            budgets.tokens.level -= tokens

    def refund(self, key: str, tokens: int) -> None:
        """Give back the tokens of a create that was answered with an error."""
        budgets = self._keys.get(key)
        if budgets is not None and budgets.tokens is not None:
            budgets.tokens.level = min(budgets.tokens.capacity, budgets.tokens.level + tokens)

    def headers(self, key: str) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers of ``key`` as its budgets stand."""
        budgets = self._budgets(key, self._clock())
        return _headers(budgets)

    @staticmethod
    def _refusal(name: str, bucket: _Bucket, cost: int, budgets: _Budgets) -> APIError:
        unit = "RPM" if name == "requests" else "TPM"
        where = f"for {name} in organization org-mock on {name} per min ({unit})"
        headers = {k.decode(): v.decode() for k, v in _headers(budgets)}
        if cost > bucket.capacity:  # no wait helps: the service says so, and tells the SDK not to retry
            return APIError(429, f"Request too large {where}: Limit {bucket.capacity}, Requested {cost}. The input "
                            "or output tokens must be reduced in order to run successfully.", type=name,
                            code="rate_limit_exceeded", headers={**headers, "x-should-retry": "false"})
        wait = bucket.wait(cost)
        used = bucket.capacity - max(0, math.floor(bucket.level))
        return APIError(429, f"Rate limit reached {where}: Limit {bucket.capacity}, Used {used}, Requested {cost}. "
                        f"Please try again in {format_duration(wait)}.",
                        type=name, code="rate_limit_exceeded",
                        headers={**headers, "retry-after": str(max(1, math.ceil(wait - 1e-6))),
                                 "retry-after-ms": str(max(1, math.ceil(wait * 1000 - 1e-6)))})

    def describe(self) -> dict[str, Any]:
        """The limits and each tracked key's remaining budget, keys shown only by fingerprint."""
        now = self._clock()
        keys = []
        for key, budgets in list(self._keys.items()):
            state: dict[str, Any] = {"fingerprint": fingerprint(key)}
            for name, bucket in (("requests", budgets.requests), ("tokens", budgets.tokens)):
                if bucket is not None:
                    level = min(bucket.capacity, bucket.level + (now - bucket.updated) * bucket.rate)
                    state[f"remaining_{name}"] = max(0, math.floor(level))
                    state[f"reset_{name}"] = format_duration((bucket.capacity - level) / bucket.rate)
            keys.append(state)
        return {"requests_per_minute": self.requests_per_minute, "tokens_per_minute": self.tokens_per_minute,
                "max_keys": self.max_keys, "keys": keys}


def _headers(budgets: _Budgets) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for name, bucket in (("requests", budgets.requests), ("tokens", budgets.tokens)):
        if bucket is not None:
            headers += bucket.headers(name)
    return headers


def key_of(authorization: bytes | None) -> str:
    """The bucket of a request: the SHA-256 of its bearer token, or :data:`ANONYMOUS`."""
    if authorization is None or not authorization.startswith(b"Bearer ") or len(authorization) <= 7:
        return ANONYMOUS
    return hashlib.sha256(authorization[7:]).hexdigest()


def fingerprint(key: str) -> str:
    """How a key is shown: ``sha256:`` and the first 8 hex digits of its digest, never the key."""
    return key if key == ANONYMOUS else f"sha256:{key[:8]}"


def parse_rate_limits(body: dict[str, Any]) -> tuple[int | None, int | None]:
    """``PUT /mock/rate_limits``'s ``{"requests_per_minute", "tokens_per_minute"}``; a bad one is a 400 naming it."""
    for name in body:
        if name not in _PARAMS:
            raise bad_request(f"Unknown parameter: '{name}'. Known: {', '.join(_PARAMS)}.", param=name,
                              code="unknown_parameter")
    values: list[int | None] = []
    for name in _PARAMS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise invalid_type(name, "an integer or null", value)
        if value is not None and not 0 <= value <= MAX_BUDGET:
            raise bad_request(f"Invalid '{name}': expected a value between 0 (unlimited) and {MAX_BUDGET:,}, but "
                              f"got {value} instead.", param=name, code="invalid_value")
        values.append(value or None)
    return values[0], values[1]


class RateLimitMiddleware:
    """Charges every ``/v1`` request to its key's budgets, answers 429 when they are spent, and adds the headers.

    Args:
        app: the application behind it.
        limiter: the budgets (changeable while serving; with no limits set, requests pass untouched).
        max_body_bytes: a create body larger than this is not read here (the app answers it with a 413).
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, max_body_bytes: int) -> None:
        self.app = app
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not limiter.enabled or not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        key = key_of(dict(scope["headers"]).get(b"authorization"))
        tokens = 0
        if limiter.tokens_per_minute and scope["method"] == "POST" and path == "/v1/responses":
            body, receive = await _buffered(scope, receive, self.max_body_bytes)
            tokens = create_cost(body, limiter.output_tokens())
        try:
            limiter.charge(key, tokens)
        except APIError as refusal:
            await refusal.to_response()(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if tokens and message["status"] >= 400:
                    limiter.refund(key, tokens)
                message = {**message, "headers": [*message.get("headers", ()), *limiter.headers(key)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _buffered(scope: Scope, receive: Receive, limit: int) -> tuple[Any, Receive]:
    """The create's JSON body (``None`` if too large or not JSON) and a ``receive`` that delivers it again."""
    messages: list[Message] = []
    declared = dict(scope["headers"]).get(b"content-length", b"")
    size, more = 0, not (declared.isdigit() and int(declared) > limit)
    while more and size <= limit:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = bool(message.get("more_body", False))
    body = None
    if not more and size <= limit:
        try:
            body = json.loads(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request"))
        except (ValueError, RecursionError):
            body = None

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay
