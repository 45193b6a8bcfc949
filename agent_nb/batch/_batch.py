"""A batch: many background runs of one agent, worked in parallel, each item ending completed or failed with its
reason, and stored so that it can be re-attached by name after a restart, or worked by several processes at once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import secrets
import sys
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

from .._agent import Agent
from .._client import ResponsesClient
from .._config import endpoint_for
from .._errors import ConfigurationError, StoreError
from .._store import RunStore, default_store
from .._store._ledger import BatchInfo, BatchLedger
from ._engine import Engine
from ._inputs import normalise_inputs
from ._pacer import RateLimit
from ._progress import BatchProgress, TextProgress
from ._results import BatchResult, results_of, to_jsonl, to_pandas
from ._spec import BatchSpec

__all__ = ["Batch"]

DEFAULT_LEASE = 30.0


def _check_concurrency(concurrency: int) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a whole number of at least 1, not {concurrency!r}.")
    return concurrency


class Batch:
    """Many runs of one agent; ``agent.batch(inputs)`` gives one, already working in the background.

    ``await batch`` or ``batch.wait()`` waits for every item to end; ``results()`` gives one row per item;
    ``cancel()`` cancels what is unfinished; ``retry_failed()`` starts the failed items again; ``stop()`` stops
    working here (the runs go on at the service: ``Batch.resume(name)`` or ``agent.batch(inputs, name=...)``
    re-attaches, in this process or another).
    """

    def __init__(self, agent: Agent, store: RunStore, info: BatchInfo, *, concurrency: int = 64,
                 rate_limit: RateLimit | None = None, lease: float = DEFAULT_LEASE,
                 spec: BatchSpec | None = None) -> None:
        self.agent = agent
        self.store = store
        self.name = info.name
        self.spec = spec or BatchSpec.from_dict(info.spec)
        self.concurrency = _check_concurrency(concurrency)
        self.rate_limit = rate_limit
        self.lease = lease
        self._ledger: BatchLedger = store.ledger()
        self._observers: list[Callable[[BatchProgress], None]] = []
        self._progress = BatchProgress.of_info(info, elapsed=time.time() - info.created_at)
        self._engine: Engine | None = None

    # -- opening ------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, agent: Agent, inputs: Any, *, name: str | None = None, concurrency: int = 64, mode: str = "poll",
             max_attempts: int = 3, rate_limit: RateLimit | None = None, options: Mapping[str, Any] | None = None,
             lease: float = DEFAULT_LEASE, start: bool = True) -> Batch:
        """Open (or re-attach to) the batch ``name`` with ``inputs`` and start working it; see ``Agent.batch``."""
        if agent.store is None:
            raise ConfigurationError("A batch lives in the run store, and this agent has none (store=False); give "
                                     "it a SQLiteRunStore or a RedisRunStore.")
        _check_concurrency(concurrency)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise ConfigurationError("rate_limit must be a RateLimit(requests_per_minute=..., tokens_per_minute=...).")
        budgets = rate_limit or RateLimit()
        spec = dataclasses.replace(BatchSpec.of(agent, options, mode=mode, max_attempts=max_attempts),
                                   concurrency=concurrency, requests_per_minute=budgets.requests_per_minute,
                                   tokens_per_minute=budgets.tokens_per_minute)
        items = normalise_inputs(inputs)
        name = name or f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        _check_name(name)
        ledger = agent.store.ledger()
        info, created = ledger.open(name, spec.to_dict())
        if not created:
            stored = BatchSpec.from_dict(info.spec)
            changed = stored.differences(spec)
            if changed:
                raise ConfigurationError(f"Batch {name!r} already exists with another {' and '.join(changed)}; a "
                                         "batch's items are all asked the same way. Use another name, or "
                                         f"Batch.delete({name!r}) first to start it over.")
        ledger.add(name, items)
        batch = cls(agent, agent.store, ledger.get(name) or info, concurrency=concurrency, rate_limit=rate_limit,
                    lease=lease, spec=spec)
        if start:
            batch.start()
        return batch

    @classmethod
    def resume(cls, name: str, *, agent: Agent | None = None, store: RunStore | None = None,
               concurrency: int | None = None, rate_limit: RateLimit | None = None, lease: float = DEFAULT_LEASE,
               start: bool = True) -> Batch:
        """Re-attach to the stored batch ``name``: finished items stay as they are, runs in flight are followed by
        their run ids, and items never sent are sent. ``agent`` defaults to one at the endpoint the batch used;
        ``concurrency`` and ``rate_limit`` to those the batch was started with."""
        store = store or (agent.store if agent is not None else None) or default_store()
        info = store.ledger().get(name)
        if info is None:
            raise StoreError(f"There is no batch {name!r} in {store}; Batch.stored(store) lists the ones there are.")
        spec = BatchSpec.from_dict(info.spec)
        if agent is None:
            client = ResponsesClient(endpoint=endpoint_for(spec.endpoint, spec.service))
            agent = Agent(client, model=spec.model, instructions=spec.instructions, store=store)
        missing = sorted(set(spec.functions) - {getattr(t, "name", None) for t in agent.tools})
        if missing:
            raise ConfigurationError(f"Batch {name!r}'s items call the function tools {', '.join(missing)}; pass an "
                                     "agent that has them (agent=Agent(tools=[...])).")
        if rate_limit is None and (spec.requests_per_minute or spec.tokens_per_minute):
            rate_limit = RateLimit(spec.requests_per_minute, spec.tokens_per_minute)
        batch = cls(agent, store, info, concurrency=concurrency or spec.concurrency, rate_limit=rate_limit,
                    lease=lease)
        if start:
            batch.start()
        return batch

    @staticmethod
    def stored(store: RunStore | None = None) -> list[BatchInfo]:
        """The batches in ``store`` (default: the default run store), newest first, with their counts."""
        return (store or default_store()).ledger().list()

    @staticmethod
    def delete(name: str, store: RunStore | None = None) -> None:
        """Forget a stored batch (its runs stay in the run store)."""
        (store or default_store()).ledger().delete(name)

    def __repr__(self) -> str:
        return f"Batch({self.name!r}: {self.progress.summary()})"

    # -- working ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Work the batch here, in the background (idempotent while it works)."""
        if self._engine is not None and self._engine.alive:
            return
        self._engine = Engine(self.agent, self.store, self.name, self.spec, concurrency=self.concurrency,
                              rate_limit=self.rate_limit, lease=self.lease, on_progress=self._heard)
        self._engine.start()

    @property
    def working(self) -> bool:
        """Whether this process works the batch now."""
        return self._engine is not None and self._engine.alive

    def _heard(self, progress: BatchProgress) -> None:
        self._progress = progress
        for observer in list(self._observers):
            with contextlib.suppress(Exception):  # a broken view must not stop the batch
                observer(progress)

    def on_progress(self, observer: Callable[[BatchProgress], None]) -> None:
        """Call ``observer`` with each new :class:`BatchProgress` (from the batch's thread, a few times a second)."""
        self._observers.append(observer)

    @property
    def progress(self) -> BatchProgress:
        """The latest snapshot of the batch (every process's items, not only this one's)."""
        if self._engine is not None and not self._engine.alive and self._engine.done.done():
            with contextlib.suppress(Exception):
                return self._engine.done.result()
        return self._progress

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> Batch:
        """Block until every item has ended (or ``timeout`` seconds); a text progress bar shows outside notebooks.

        Raises the engine's failure (a store that cannot be read, say) if it stopped with one.
        """
        self.start_if_idle()
        assert self._engine is not None
        bar = TextProgress(self.name, self._progress.total) if (progress if progress is not None
                                                                 else not _in_kernel()) else None
        if bar is not None:
            self.on_progress(bar.update)
        try:
            self._engine.done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"Batch {self.name!r} is still working after {timeout:g}s: "
                               f"{self.progress.summary()}.") from None
        finally:
            if bar is not None:
                self._observers.remove(bar.update)
                bar.close(self.progress)
        return self

    def start_if_idle(self) -> None:
        """Start working the batch here unless this process already does, or it has nothing left to do."""
        if self._engine is not None and self._engine.alive:
            return
        info = self._ledger.get(self.name)
        if self._engine is None or (info is not None and info.unfinished > 0):
            self.start()

    def __await__(self) -> Generator[Any, None, Batch]:
        self.start_if_idle()
        assert self._engine is not None
        yield from asyncio.wrap_future(self._engine.done).__await__()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop working the batch here and wait for that; its runs go on at the service, to be re-attached."""
        if self._engine is not None and self._engine.alive:
            self._engine.stop()
            with contextlib.suppress(Exception):
                self._engine.done.result(timeout)

    def cancel(self) -> int:
        """Cancel the batch: items not started are cancelled, runs in flight are cancelled at the service (by
        whichever process follows them). Returns how many items had not started."""
        count = self._ledger.cancel(self.name)
        if self._engine is not None and self._engine.alive:
            self._engine.cancel()
        else:
            self.start()
        return count

    def retry_failed(self) -> int:
        """Start the failed items again (including those whose create's fate was unknown); returns how many."""
        count = self._ledger.reset(self.name, ["failed"])
        if count:
            self.start_if_idle()
            if self._engine is not None:
                self._engine.wake()  # an engine waiting for other workers' items claims these at once
        return count

    # -- results ------------------------------------------------------------------------------------------------
    def results(self) -> list[BatchResult]:
        """One row per item, in input order: key, status, text, error, usage, run id and attempts."""
        return results_of(self._ledger.items(self.name), self.store)

    def to_pandas(self) -> Any:
        """The results as a pandas DataFrame indexed by key (pandas must be installed)."""
        return to_pandas(self.results())

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the results to ``path``, one JSON object per line; returns the path."""
        return to_jsonl(self.results(), path)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise ConfigurationError(f"A batch name must be 1 to 200 printable characters, not {name!r}.")


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    ip = get() if get else None
    return ip is not None and getattr(ip, "kernel", None) is not None

