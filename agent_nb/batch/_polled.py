"""The fast path of a batch: items created with one POST each and polled by one shared loop.

No task sleeps per run: the poller keeps the runs in flight in a heap by when each is due, and sends the polls that
are due (at most ``slots`` at a time) at the batch's pace. A run is polled soon after it starts, then less and less
often, up to the batch's ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any

from .._client import Retryable, exhausted
from .._errors import APIError
from .._resume import TERMINAL_STATUSES
from ._outcomes import UNKNOWN_FATE, Outcome, error_of, of_exception

if TYPE_CHECKING:
    from ._engine import Engine
    from ._flight import Flight

__all__ = ["Poller", "create_and_poll"]

FIRST_POLL = 0.05  # seconds after the create before the first poll; each next one waits twice as long
_MAX_RATE_LIMITED = 100  # 429s one create may meet before its attempt counts as failed


async def create_and_poll(engine: Engine, flight: Flight) -> None:
    """Create the item's response (retrying only what cannot start a second run), then hand it to the poller."""
    body, _ = engine.agent.request_body(flight.input, engine.spec.request_options())
    cost = engine.spec.estimated_tokens(flight.input)
    limited = 0
    marked = False
    while True:
        if engine.cancelling:
            engine.finished(flight, Outcome("cancelled", error_of("cancelled", "The batch was cancelled before this "
                                                                  "item started.")))
            return
        await engine.pacer.acquire(cost)
        if not marked:
            await engine.sending(flight)
            marked = True
        try:
            response = await engine.calls.create_once(body)
        except Retryable as exc:
            if not exc.repeatable:
                engine.finished(flight, Outcome("failed", error_of(UNKNOWN_FATE, f"The create's fate is unknown "
                                                                   f"({exc.reason}); it was not sent again.")))
                return
            if _rate_limited(exc) and limited < _MAX_RATE_LIMITED:
                limited += 1  # the pacer has paused the whole batch; this create waits its turn again
                continue
            flight.failures += 1
            if flight.failures > engine.client.retry.max_retries:
                engine.finished(flight, of_exception(exhausted(exc, "start the run", flight.failures)))
                return
            await asyncio.sleep(engine.client.retry.delay(flight.failures, exc.retry_after))
            continue
        except Exception as exc:
            engine.finished(flight, of_exception(exc))
            return
        break
    engine.pacer.succeeded()
    flight.failures = 0
    engine.started(flight, str(response.get("id")), str(response.get("status")))
    if response.get("status") in TERMINAL_STATUSES:
        engine.finished_with(flight, response)
    else:
        engine.poller.schedule(flight, min(FIRST_POLL, engine.spec.poll_interval))


def _rate_limited(exc: Retryable) -> bool:
    return isinstance(exc.error, APIError) and exc.error.status_code == 429


class Poller:
    """The one loop that polls every polled run of a batch (see the module docstring)."""

    def __init__(self, engine: Engine, slots: int) -> None:
        self.engine = engine
        self._heap: list[tuple[float, int, Flight]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(slots)
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, flight: Flight, delay: float) -> None:
        flight.interval = delay
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), flight))
        self._changed.set()

    async def run(self) -> None:
        while True:
            if not self._heap:
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
                continue
            await self._slots.acquire()
            _, _, flight = heapq.heappop(self._heap)
            task = asyncio.get_running_loop().create_task(self._poll(flight))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _poll(self, flight: Flight) -> None:
        engine = self.engine
        try:
            if engine.cancelling and not flight.cancel_sent:
                flight.cancel_sent = True
                response: dict[str, Any] = await engine.client.cancel(str(flight.response_id))
            else:
                await engine.pacer.acquire()
                response = await engine.calls.retrieve_once(str(flight.response_id))
        except Retryable as exc:
            if _rate_limited(exc):  # the pacer holds the whole batch back; this poll just waits its turn
                self.schedule(flight, max(flight.interval, FIRST_POLL))
                return
            flight.failures += 1
            if flight.failures > engine.client.retry.max_retries:
                failure = of_exception(exhausted(exc, f"follow {flight.response_id}", flight.failures))
                engine.finished(flight, failure._replace(retry=False))  # it may still run: never start it twice
            else:
                self.schedule(flight, engine.client.retry.delay(flight.failures, exc.retry_after))
            return
        except Exception as exc:
            engine.finished(flight, of_exception(exc))
            return
        finally:
            self._slots.release()
        engine.pacer.succeeded()
        flight.failures = 0
        if response.get("status") in TERMINAL_STATUSES:
            engine.finished_with(flight, response)
        else:
            self.schedule(flight, min(engine.spec.poll_interval, max(flight.interval, FIRST_POLL) * 2))

    def hurry(self) -> None:
        """Make every scheduled poll due now (a cancelled batch cancels its runs at once)."""
        now = time.monotonic()
        self._heap = [(now, order, flight) for _, order, flight in self._heap]
        heapq.heapify(self._heap)
        self._changed.set()
