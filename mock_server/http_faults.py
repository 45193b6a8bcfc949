"""The HTTP-error faults of one server: which request is answered 429, 500 or 503 instead of being served.

Three sources, checked in this order (see :mod:`mock_server.faults`): the server-wide spec (counts for the next K
requests of any kind, and ``http_429_rate``), the request's ``X-Mock-Faults`` header (counts per request identity,
so a retrying client meets K failures and then succeeds), and the ``mock_faults`` of the response a follow-up
request is about.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict

from .errors import APIError
from .faults import FaultSpec
from .runs import Run

__all__ = ["HTTPFaults", "http_fault"]

_BODIES = {
    429: ("Rate limit reached for requests (mock fault). Please try again in {s}s.", "requests",
          "rate_limit_exceeded"),
    500: ("The server had an error while processing your request (mock fault). Sorry about that!", "server_error",
          None),
    503: ("The server is overloaded or not ready yet (mock fault). Please try again in {s}s.", "server_error",
          None),
}


def http_fault(status: int, retry_after: float) -> APIError:
    """The error an injected ``status`` is answered with; 429 and 503 carry ``retry-after``/``retry-after-ms``."""
    message, kind, code = _BODIES[status]
    headers = {}
    if status in (429, 503):
        headers = {"retry-after": str(max(0, math.ceil(retry_after))), "retry-after-ms": str(int(retry_after * 1000))}
    return APIError(status, message.format(s=f"{retry_after:g}"), type=kind, code=code, headers=headers)


class HTTPFaults:
    """The server-wide HTTP-error faults and the counts of ``X-Mock-Faults`` requests.

    Args:
        spec: the server-wide faults (only the HTTP-error keys and ``retry_after`` are used).
        tracked_requests: how many distinct ``X-Mock-Faults`` requests are remembered (the oldest are forgotten).
        seed: seed of the draws of the ``http_429_rate`` keys, so that one sequence of requests meets the same
            429s on every run of a test.
    """

    def __init__(self, spec: FaultSpec, *, tracked_requests: int, seed: int = 0) -> None:
        self._tracked = tracked_requests
        self._rng = random.Random(seed)
        #: HTTP-error counts of X-Mock-Faults requests, by a hash of the request's identity.
        self.requests: OrderedDict[str, dict[int, int]] = OrderedDict()
        self._counts: dict[int, int] = {}
        self._retry_after = 1.0
        self._rate = 0.0
        self.set(spec)

    def set(self, spec: FaultSpec) -> None:
        """Replace the server-wide HTTP-error faults; their counts start again."""
        self._counts = dict(spec.http_errors)
        self._retry_after = spec.retry_after
        self._rate = spec.http_429_rate

    def spec(self) -> FaultSpec:
        """The server-wide HTTP-error faults as they stand (counts already used up are gone)."""
        return FaultSpec(http_429=self._counts.get(429, 0), http_500=self._counts.get(500, 0),
                         http_503=self._counts.get(503, 0), retry_after=self._retry_after,
                         http_429_rate=self._rate)

    def check(self, identity: bytes, header: FaultSpec | None, run: Run | None) -> None:
        """Raise the injected HTTP error this request should get, if any.

        Args:
            identity: what makes two requests "the same" for the header's counts (method, path, query, body...).
            header: the request's ``X-Mock-Faults``, parsed.
            run: the response the request is about, whose ``mock_faults`` may fail it.
        """
        status = _take(self._counts)
        if status:
            raise http_fault(status, self._retry_after)
        if self._hit(self._rate):
            raise http_fault(429, self._retry_after)
        if header is not None:
            if header.http_errors:
                key = hashlib.sha256(identity).hexdigest()
                counts = self.requests.get(key)
                if counts is None:
                    counts = self.requests[key] = dict(header.http_errors)
                    while len(self.requests) > self._tracked:
                        self.requests.popitem(last=False)
                else:
                    self.requests.move_to_end(key)
                status = _take(counts)
                if status:
                    raise http_fault(status, header.retry_after)
            if self._hit(header.http_429_rate):
                raise http_fault(429, header.retry_after)
        if run is not None:
            status = _take(run.http_errors)
            if status:
                raise http_fault(status, run.faults.retry_after)
            if self._hit(run.faults.http_429_rate):
                raise http_fault(429, run.faults.retry_after)

    def _hit(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate


def _take(counts: dict[int, int]) -> int | None:
    for status in (429, 500, 503):
        if counts.get(status, 0) > 0:
            counts[status] -= 1
            return status
    return None
