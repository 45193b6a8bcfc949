"""The engine that works a batch in this process: it claims items, creates and follows their runs, and records how
each ended, on its own event loop in a daemon thread (so a batch moves on while a notebook cell or a script does
other things, and ``wait()`` works with or without a running loop).

Several engines (in other processes, on other machines with Redis) can work the same batch: each claims pending
items atomically and heartbeats its lease; one that is gone (its lease ran out, or its process here has died) has its
unfinished items taken over, and followed by their run ids, never created again.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .._agent import Agent
from .._client import ResponsesClient, _retry_after
from .._errors import AgentNBError, StoreError
from .._items import OutputItems
from .._polling import output_text
from .._store import RunRecord, RunStore, new_run_id
from .._store._ledger import BatchInfo, BatchItem, BatchLedger, new_owner
from .._tools import FunctionTool
from ._flight import Flight
from ._followed import follow
from ._inputs import prompt_of
from ._outcomes import UNKNOWN_FATE, Outcome, of_response
from ._pacer import PacedRetry, Pacer, RateLimit
from ._polled import Poller, create_and_poll
from ._progress import BatchProgress, Throughput
from ._spec import BatchSpec
from ._takeover import take_over
from ._wire import lean_calls
from ._writes import Writes, warn_store_failed

__all__ = ["Engine"]

_TICK = 0.25  # seconds between looks at the whole batch (counts, cancellation, the end)
_FLUSH = 0.05  # seconds between flushes of the batch's writes
_CLAIM = 200  # items claimed at a time, at most
_STORE_RETRY = 0.5  # seconds before claiming again after the store refused a claim


class Engine:
    """Works one batch in this process until every item is final, or until :meth:`stop`; see the module docstring.

    ``on_progress`` is called with a :class:`BatchProgress` from the engine's thread, at most every ``_TICK``.
    """

    def __init__(self, agent: Agent, store: RunStore, name: str, spec: BatchSpec, *, concurrency: int,
                 rate_limit: RateLimit | None, lease: float,
                 on_progress: Callable[[BatchProgress], None] | None = None) -> None:
        self.source = agent
        self.store = store
        self.ledger: BatchLedger = store.ledger()
        self.name = name
        self.spec = spec
        self.concurrency = concurrency
        self.lease = lease
        self.owner = new_owner()
        self.pacer = Pacer(concurrency, rate_limit)
        self.writes = Writes(store, self.ledger, name, self.owner)
        self.on_progress = on_progress
        self.flights: dict[str, Flight] = {}
        self.cancelling = False
        self.progress = BatchProgress(name, 0)
        self.errors: collections.deque[str] = collections.deque(maxlen=5)
        self.store_error: StoreError | None = None  # the store refused a claim or a look, and has not since
        self.done = concurrent.futures.Future[BatchProgress]()
        self._functions = [t for t in agent.tools if isinstance(t, FunctionTool)]
        self.fast = spec.mode == "poll" and not spec.functions
        self._throughput = Throughput()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._created_at = time.time()
        self._flush_now: asyncio.Event | None = None
        self._gates: list[tuple[int, int, asyncio.Future[None]]] = []  # creates waiting for their mark's commit
        self._gate_order = itertools.count()

    # -- control, from any thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"agent-nb batch {self.name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop working here (the runs go on at the service; another process, or a re-attach, follows them)."""
        self._call(lambda: self._stop.set() if self._stop else None)

    def cancel(self) -> None:
        self._call(self._cancel_now)

    def wake(self) -> None:
        self._call(lambda: self._wake.set() if self._wake else None)

    def _call(self, action: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(action)

    # -- the loop ------------------------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            progress = asyncio.run(self._work())
        except BaseException as exc:
            self.done.set_exception(exc)
        else:
            self.done.set_result(progress)

    async def _work(self) -> BatchProgress:
        self._loop = asyncio.get_running_loop()
        self._stop, self._wake, self._flush_now = asyncio.Event(), asyncio.Event(), asyncio.Event()
        source = self.source.client
        self.client = ResponsesClient(endpoint=source.endpoint, retry=PacedRetry.of(source.retry, self.pacer),
                                      timeout=source.timeout,
                                      max_connections=max(64, self.concurrency + 16))
        self.client.on_answer = self._on_answer
        self.calls = lean_calls(self.client, max_connections=self.concurrency + 16)  # creates and polls
        self.agent = Agent(self.client, name=self.source.name, instructions=self.spec.instructions,
                           model=self.spec.model, store=self.store, tools=self._functions,
                           max_tool_rounds=self.spec.max_tool_rounds or self.source.max_tool_rounds)
        self.poller = Poller(self, slots=max(8, min(self.concurrency, 256)))
        info = await self.io(self.ledger.get, self.name)
        if info is not None:
            self._created_at = info.created_at
        await self.io(self.ledger.heartbeat, self.name, self.owner, self.lease)
        loops = [self._submit(), self._housekeep(), self._flush_loop()] + ([self.poller.run()] if self.fast else [])
        workers = [asyncio.create_task(work) for work in loops]
        try:
            await self._stop.wait()
        finally:
            for task in [*workers, *self._tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            await self.io(self.writes.flush)
            with contextlib.suppress(StoreError):
                await self.io(self.ledger.release, self.name, self.owner)
            await self.client.aclose()
            if self.calls is not self.client:
                await self.calls.aclose()
            self.progress = await self._measure(final=True)
        return self.progress

    async def io(self, call: Callable[..., Any], *args: Any) -> Any:
        """A store call, in a worker thread so that the loop goes on meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: call(*args))

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(self) -> None:
        assert self._wake is not None
        while True:
            free = self.pacer.allowed_in_flight - len(self.flights)
            if free <= 0 or self.cancelling:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            await self.pacer.acquire()  # no claim while the batch is paused: the items would only wait here
            try:
                items = await self.io(self._claim, min(free, _CLAIM))
            except StoreError as exc:  # nothing was claimed (one transaction): claim again once the store can
                self._store_failed(exc)
                await asyncio.sleep(_STORE_RETRY)
                continue
            self.store_error = None
            if not items:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _TICK * 2)
                continue
            for item in items:
                flight = self.flights[item.key] = Flight(item)
                self.spawn(create_and_poll(self, flight) if self.fast else follow(self, flight, resume=False))

    def _claim(self, count: int) -> list[BatchItem]:
        """Claim pending items and, for the fast path, record their runs, in one transaction: a run's record exists
        before its create is sent, so whoever takes the item over can tell whether it may have been."""
        with self.store.transaction():
            items = self.ledger.claim(self.name, self.owner, [new_run_id() for _ in range(count)])
            if self.fast:
                for item in items:
                    self.store.add(self._record(item))
        return items

    def _record(self, item: BatchItem) -> RunRecord:
        return RunRecord(run_id=str(item.run_id), endpoint=self.client.base_url, model=self.spec.model,
                         prompt=prompt_of(item.input), instructions=self.spec.instructions,
                         name=f"{self.name}/{item.key}", labels=self._labels(item.key), mode="poll",
                         service=self.client.endpoint.kind)

    def _labels(self, key: str) -> dict[str, str]:
        return {**self.spec.labels, "batch": self.name, "batch_key": key}

    def run_options(self, flight: Flight) -> dict[str, Any]:
        """The options of an item's run on the full path."""
        return {**self.spec.request_options(), "name": f"{self.name}/{flight.key}", "labels": self._labels(flight.key)}

    async def _housekeep(self) -> None:
        next_adopt = 0.0
        next_beat = time.monotonic() + self.lease / 3
        while True:
            now = time.monotonic()
            try:  # a store that refuses writes or reads for a while must not end these looks
                if now >= next_beat:
                    await self.io(self.ledger.heartbeat, self.name, self.owner, self.lease)
                    next_beat = now + self.lease / 3
                if now >= next_adopt:
                    await take_over(self)
                    next_adopt = now + min(1.0, self.lease / 2)
                self.progress = await self._measure()
            except StoreError as exc:
                self._store_failed(exc)
                self.progress = dataclasses.replace(self.progress, store_error=str(exc))
            if self.on_progress is not None:
                self.on_progress(self.progress)
            if self.progress.state != "running" and not self.flights and not len(self.writes):
                assert self._stop is not None
                self._stop.set()
                return
            await asyncio.sleep(_TICK)

    async def _flush_loop(self) -> None:
        assert self._flush_now is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), _FLUSH)
            self._flush_now.clear()
            if len(self.writes):
                await self.io(self.writes.flush)
            committed = self.writes.committed
            while self._gates and self._gates[0][0] <= committed:
                *_, gate = heapq.heappop(self._gates)
                if not gate.done():
                    gate.set_result(None)

    async def sending(self, flight: Flight) -> None:
        """Mark the item ``submitting`` and wait until that is committed: only then may its create be sent, so a
        process that takes the item over knows whether it may have been (``claimed`` items never were)."""
        assert self._flush_now is not None
        self.writes.item(flight.key, status="submitting")
        gate = asyncio.get_running_loop().create_future()
        heapq.heappush(self._gates, (self.writes.noted, next(self._gate_order), gate))
        self._flush_now.set()
        await gate

    async def _measure(self, final: bool = False) -> BatchProgress:
        info = await self.io(self.ledger.get, self.name) or BatchInfo(self.name, {})
        if info.state == "cancelled" and not self.cancelling:
            self._cancel_now()
        progress = BatchProgress.of_info(info, working=bool(self.flights), stopped=final,
                                         elapsed=time.time() - self._created_at, rate_limited=self.pacer.pause_left(),
                                         throttled=self.pacer.rate_limited, errors=tuple(self.errors),
                                         store_error=_said(self.store_error or self.writes.error))
        return dataclasses.replace(progress, throughput=self._throughput.note(progress.finished))

    def _store_failed(self, exc: StoreError) -> None:
        if self.store_error is None and self.writes.error is None:
            warn_store_failed(self.name, exc)
        self.store_error = exc

    # -- what the paths report ----------------------------------------------------------------------------------
    def _on_answer(self, status: int, headers: httpx.Headers) -> None:
        if status == 429:
            self.pacer.rate_limited_for(_retry_after(headers))
        self.pacer.observe(status, headers)

    def _cancel_now(self) -> None:
        if self.cancelling:
            return
        self.cancelling = True
        self.poller.hurry()
        for flight in list(self.flights.values()):
            if flight.run is not None and flight.run.response_id is not None and not flight.run.terminal:
                self.spawn(self._cancel_at_service(flight.run.response_id))

    def started(self, flight: Flight, response_id: str, status: str, *, record: bool = True) -> None:
        flight.response_id = response_id
        if record:
            self.writes.run(self.store.update, flight.run_id, response_id=response_id, status=status)
        self.writes.item(flight.key, status="running", response_id=response_id)
        if self.cancelling and flight.run is not None:  # confirmed after the batch was cancelled: cancel it too
            self.spawn(self._cancel_at_service(response_id))

    def finished_with(self, flight: Flight, response: Mapping[str, Any]) -> None:
        """A polled run reached a final status: record its outcome from the Response object."""
        text = output_text(response) or ""
        items = OutputItems()
        items.replace(response.get("output"), text)
        status = str(response.get("status"))
        self.writes.run(self.store.finish, flight.run_id, str(response.get("id")), status, text,
                        items=items.stored(), error=response.get("error"))
        self.finished(flight, of_response(response), usage=response.get("usage"), response_id=response.get("id"),
                      record=False)

    def finished(self, flight: Flight, outcome: Outcome, *, usage: Any = None, response_id: Any = None,
                 record: bool = True) -> None:
        """An attempt ended: record it, and make the item pending again when another attempt makes sense."""
        self.flights.pop(flight.key, None)
        if record:  # the run never reached a final status at the service: say how its record ends
            status = "lost" if outcome.error and outcome.error.get("code") == UNKNOWN_FATE else outcome.status
            self.writes.run(self.store.note_status, flight.run_id, status, error=outcome.error)
        if outcome.retry and (outcome.free or flight.attempts < self.spec.max_attempts) and not self.cancelling:
            attempts = {"attempts": flight.attempts - 1} if outcome.free else {}
            self.writes.item(flight.key, status="pending", error=outcome.error, response_id=None, **attempts)
        else:
            self.writes.item(flight.key, status=outcome.status, error=outcome.error, usage=usage,
                             **({"response_id": response_id} if response_id else {}))
            if outcome.status == "failed" and outcome.error:
                self.errors.append(f"{flight.key}: {outcome.error.get('message')}")
        if self._wake is not None:
            self._wake.set()

    async def _cancel_at_service(self, response_id: str) -> None:
        """Cancel a followed run at the service; its stream (or its polls) then see it end, as any other ending."""
        with contextlib.suppress(AgentNBError):
            await self.client.cancel(response_id)


def _said(error: StoreError | None) -> str | None:
    return str(error) if error is not None else None
