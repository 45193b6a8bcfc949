"""The event loop notebook runs live on: its own thread, so runs go on while a cell blocks the kernel."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop"]

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop in a daemon thread. ``BackgroundLoop.get()`` gives the process-wide one."""

    _instance: BackgroundLoop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="agent-nb-loop", daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> BackgroundLoop:
        with cls._lock:
            if cls._instance is None or not cls._instance._thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; the returned future can be waited on from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, callback: Any, *args: Any) -> None:
        """Call ``callback(*args)`` on the loop thread, soon."""
        self.loop.call_soon_threadsafe(callback, *args)
