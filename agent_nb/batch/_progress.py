"""How far a batch is: counts by status, throughput, ETA, the latest errors; and a progress bar outside notebooks."""

from __future__ import annotations

import collections
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from .._store._ledger import BatchInfo

__all__ = ["BatchProgress", "TextProgress", "Throughput", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h03m``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass(frozen=True)
class BatchProgress:
    """A snapshot of a batch, as every view shows it.

    ``done`` counts completed and incomplete items, ``waiting`` those not sent yet (pending), ``running`` those
    being created or followed (by any process). ``state`` is ``running``, ``completed`` (every item is final),
    ``cancelled`` or ``stopped`` (this process stopped following; the items go on on the service).
    """

    name: str
    total: int
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    waiting: int = 0
    elapsed: float = 0.0
    throughput: float = 0.0  # items finished per second, lately
    state: str = "running"
    rate_limited: float = 0.0  # seconds left of a Retry-After pause
    throttled: int = 0  # 429s this process met
    errors: tuple[str, ...] = field(default_factory=tuple)
    store_error: str | None = None  # the run store refuses writes now (a full disk): the batch keeps trying

    @classmethod
    def of_info(cls, info: BatchInfo, *, working: bool = False, stopped: bool = False, **extra: Any
                ) -> BatchProgress:
        """The snapshot of the stored batch ``info``: ``running`` while any item is open (or this process still
        works on one: ``working``), ``stopped`` instead if this process stopped following it, else ``completed``
        or ``cancelled``."""
        counts = info.counts
        if info.unfinished or working:
            state = "stopped" if stopped else "running"
        else:
            state = "cancelled" if info.state == "cancelled" else "completed"
        return cls(info.name, info.total, done=counts.get("completed", 0) + counts.get("incomplete", 0),
                   failed=counts.get("failed", 0), cancelled=counts.get("cancelled", 0),
                   running=sum(counts.get(status, 0) for status in ("claimed", "submitting", "running")),
                   waiting=counts.get("pending", 0), state=state, **extra)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def pause(self) -> float | None:
        """Whole seconds left of a rate-limit pause of a running batch (at least 1), else None: a stopped batch
        is not waiting on anything, and "resuming in 0s" says nothing."""
        if self.state != "running" or self.rate_limited <= 0:
            return None
        return float(max(1, math.ceil(self.rate_limited)))

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0

    @property
    def eta(self) -> float | None:
        left = self.total - self.finished
        if left == 0:
            return 0.0
        return left / self.throughput if self.throughput > 0 else None

    def summary(self) -> str:
        """One line: ``412/500 done · 6 failed · 64 running · 18 waiting · 9.8/s · ETA 9s · 42s``."""
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        if self.running:
            parts.append(f"{self.running} running")
        if self.waiting:
            parts.append(f"{self.waiting} waiting")
        if self.state == "running":
            parts.append(f"{self.throughput:.1f}/s")
            parts.append(f"ETA {format_duration(self.eta)}")
        else:
            parts.append(self.state)
        if self.pause is not None:
            parts.append(f"rate-limited, resuming in {format_duration(self.pause)}")
        if self.store_error:
            parts.append(f"the run store refuses writes ({self.store_error}), retrying")
        parts.append(format_duration(self.elapsed))
        return " · ".join(parts)


class Throughput:
    """Items finished per second over the last ``window`` seconds (or since the start, if shorter)."""

    def __init__(self, window: float = 30.0) -> None:
        self.window = window
        self.started = time.monotonic()
        self._marks: collections.deque[tuple[float, int]] = collections.deque()

    def note(self, finished: int) -> float:
        now = time.monotonic()
        self._marks.append((now, finished))
        while len(self._marks) > 2 and now - self._marks[0][0] > self.window:
            self._marks.popleft()
        first_time, first_count = self._marks[0]
        span = now - first_time
        return (finished - first_count) / span if span > 0.5 else 0.0


class TextProgress:
    """A progress bar for plain Python: ``tqdm``'s when it is installed, else one line rewritten on a terminal
    (or a line every 10% elsewhere), so a long batch always shows that it moves."""

    def __init__(self, name: str, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._last_tenth = -1
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=f"batch {name}", unit="item", file=self.stream, dynamic_ncols=True)

    def update(self, progress: BatchProgress) -> None:
        if self._bar is not None:
            self._bar.total = progress.total
            self._bar.n = progress.finished
            self._bar.set_postfix_str(f"{progress.failed} failed, {progress.running} running", refresh=False)
            self._bar.refresh()
            return
        tty = getattr(self.stream, "isatty", lambda: False)()
        tenth = int(progress.fraction * 10)
        if tty:
            self.stream.write(f"\rbatch {progress.name}: {progress.summary()}\x1b[K")
        elif tenth != self._last_tenth:
            self.stream.write(f"batch {progress.name}: {progress.summary()}\n")
        self._last_tenth = tenth
        self.stream.flush()

    def close(self, progress: BatchProgress) -> None:
        if self._bar is not None:
            self.update(progress)
            self._bar.close()
            return
        self.stream.write(("\r" if getattr(self.stream, "isatty", lambda: False)() else "")
                          + f"batch {progress.name}: {progress.summary()}\n")
        self.stream.flush()
