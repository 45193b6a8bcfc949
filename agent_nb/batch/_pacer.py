"""The pace of a batch: explicit budgets, the service's rate-limit headers, and 429s, for every request at once.

One :class:`Pacer` gates every request a batch sends (creates and polls). It waits out a ``Retry-After`` for the
whole batch (a 429 means the key's budget is spent, so every request would meet it), spreads requests over the time
until the budget resets when the service's ``x-ratelimit-remaining-*`` headers say it is running low, and keeps to
the explicit :class:`RateLimit`, if any. It also narrows the number of runs in flight after a 429 and widens it
again as requests succeed (additive increase, multiplicative decrease), within ``concurrency``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .._client import RetryPolicy
from .._errors import ConfigurationError

__all__ = ["PacedRetry", "Pacer", "RateLimit", "parse_reset"]

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


@dataclass(frozen=True)
class RateLimit:
    """Explicit budgets for a batch: at most ``requests_per_minute`` requests and ``tokens_per_minute`` estimated
    tokens (a create's input characters / 4 plus its ``max_output_tokens``) per minute; None is no budget."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigurationError(f"RateLimit({name}={value!r}): a budget must be a positive number, or None "
                                         "for none.")


def parse_reset(value: str | None) -> float | None:
    """Seconds in the service's ``x-ratelimit-reset-*`` form (``1s``, ``6m0s``, ``120ms``, ``1h2m3.5s``)."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    match = _DURATION.match(value)
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


class _Bucket:
    """A token bucket: ``capacity`` per minute, refilled continuously."""

    def __init__(self, per_minute: float) -> None:
        self.capacity = per_minute
        self.level = per_minute
        self.rate = per_minute / 60.0
        self.stamp = time.monotonic()

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` can be spent (0 now); spends it when it can."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        cost = min(cost, self.capacity)
        if self.level >= cost:
            self.level -= cost
            return 0.0
        return (cost - self.level) / self.rate


class Pacer:
    """Gates a batch's requests; see the module docstring. Used from one event loop."""

    def __init__(self, concurrency: int, limit: RateLimit | None = None) -> None:
        self.concurrency = concurrency
        self.window = float(concurrency)  # runs allowed in flight now
        self.paused_until = 0.0  # monotonic time before which nothing is sent (a Retry-After)
        self.rate_limited = 0  # 429s met
        self._requests = _Bucket(limit.requests_per_minute) if limit and limit.requests_per_minute else None
        self._tokens = _Bucket(limit.tokens_per_minute) if limit and limit.tokens_per_minute else None
        self._spacing = {"requests": 0.0, "tokens": 0.0}  # seconds between requests (creates) while a budget runs low
        self._next_slot = {"requests": 0.0, "tokens": 0.0}
        self._typical_tokens = 1.0  # a running average of creates' estimated cost

    @property
    def allowed_in_flight(self) -> int:
        return max(1, int(self.window))

    def pause_left(self) -> float:
        return max(0.0, self.paused_until - time.monotonic())

    async def acquire(self, tokens: float = 0.0) -> None:
        """Wait until a request costing ``tokens`` may be sent."""
        if tokens:
            self._typical_tokens += (tokens - self._typical_tokens) / 20
        while True:
            delay = self.pause_left()
            now = time.monotonic()
            for kind in ("requests", "tokens") if tokens else ("requests",):
                if delay <= 0 and self._spacing[kind] > 0:
                    delay = max(0.0, self._next_slot[kind] - now)
                    if delay <= 0:
                        self._next_slot[kind] = max(self._next_slot[kind], now) + self._spacing[kind]
            if delay <= 0 and self._requests is not None:
                delay = self._requests.wait_for(1)
            if delay <= 0 and self._tokens is not None and tokens:
                delay = self._tokens.wait_for(tokens)
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    def rate_limited_for(self, retry_after: float | None) -> None:
        """A 429: pause every request for ``retry_after`` (or a second), and halve the runs in flight."""
        self.rate_limited += 1
        self.paused_until = max(self.paused_until, time.monotonic() + (retry_after if retry_after else 1.0))
        self.window = max(1.0, self.window / 2)

    def succeeded(self) -> None:
        """A request went through: widen the window again, by one run per window's worth of successes."""
        if self.window < self.concurrency:
            self.window = min(float(self.concurrency), self.window + 1.0 / max(self.window, 1.0))

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Steer by the service's ``x-ratelimit-*`` headers: when fewer requests (or tokens, for creates of the
        typical cost) remain than runs may be in flight, send no faster than the budget refills.

        The budget refills continuously: ``limit - remaining`` comes back within ``reset`` seconds, so that is the
        rate requests may go at without meeting a 429.
        """
        for kind in ("requests", "tokens"):
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is None or reset is None:
                continue
            cost = max(self._typical_tokens, 1.0) if kind == "tokens" else 1.0
            if remaining >= self.window * cost or reset <= 0:
                self._spacing[kind] = 0.0
                continue
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            spent = (limit - remaining) if limit is not None and limit > remaining else max(remaining, cost)
            self._spacing[kind] = cost * reset / spent


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class PacedRetry(RetryPolicy):
    """A retry policy whose backoff is never shorter than the batch's pause: a run's own retries (a streamed
    create meeting a 429, say) wait for the whole batch's Retry-After too."""

    pacer: Pacer | None = None

    @classmethod
    def of(cls, policy: RetryPolicy, pacer: Pacer) -> PacedRetry:
        return cls(**{f.name: getattr(policy, f.name) for f in dataclasses.fields(RetryPolicy)}, pacer=pacer)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = super().delay(attempt, retry_after)
        return max(wait, self.pacer.pause_left()) if self.pacer is not None else wait
