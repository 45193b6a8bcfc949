"""Server-sent events from a run's log, with the per-connection faults (drop, stall, split)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from .runs import Run

_REPLAY_SLICE = 256  # frames per write when replaying a backlog


class DroppedConnection(Exception):
    """Raised inside the ASGI app to make the server cut the connection mid-stream (an injected drop)."""


class _QuietDrops(logging.Filter):
    """Keeps injected drops out of the server log: they are the point, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DroppedConnection):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class _Disconnected(Exception):
    pass


class EventStream:
    """An ASGI response streaming ``run.frames[start:]`` and then live frames until the run finishes.

    Args:
        run: the run to follow.
        start: index of the first frame to send (``starting_after + 1``).
        cancel_on_disconnect: cancel the run when the client goes away (non-background streams).
    """

    def __init__(self, run: Run, start: int, *, cancel_on_disconnect: bool = False) -> None:
        self.run = run
        self.start = start
        self.cancel_on_disconnect = cancel_on_disconnect
        faults = run.faults
        number = run.stream_connections
        run.stream_connections += 1
        self.drop_after = faults.drop_after_for(run.record.id, number, len(run.steps) - start)
        self.stall_after = faults.stall_after if faults.stall > 0 and number < faults.stalls else None
        self.split = faults.split
        self._disconnected = False
        self._waiter: asyncio.Future[Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        try:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            })
            await self._stream(send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except _Disconnected:
            if self.cancel_on_disconnect:
                self.run.cancel()
        finally:
            watcher.cancel()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._disconnected = True
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_exception(_Disconnected())
                return

    async def _stream(self, send: Send) -> None:
        run = self.run
        index = self.start
        sent = 0
        simple = self.drop_after is None and self.stall_after is None and self.split is None
        while True:
            if self._disconnected:
                raise _Disconnected
            frames = run.frames
            if index < len(frames):
                if simple:
                    # Send what is there in one write, in slices so a long replay starts arriving at once.
                    end = min(len(frames), index + _REPLAY_SLICE)
                    chunk = frames[index] if end - index == 1 else b"".join(frames[index:end])
                    index = end
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if index < len(frames):
                        await asyncio.sleep(0)  # let the disconnect watcher and other streams run
                    continue
                await self._send_with_faults(send, frames[index], sent)
                index += 1
                sent += 1
                continue
            if run.closed:
                return  # ended, or deleted: a deleted response's stream ends at once
            self._waiter = run.wait_for_more(index)
            await self._waiter

    async def _send_with_faults(self, send: Send, frame: bytes, sent: int) -> None:
        if self.drop_after is not None and sent >= self.drop_after:
            raise DroppedConnection(f"mock fault: drop after {self.drop_after} events")
        if self.stall_after is not None and sent == self.stall_after:
            self.stall_after = None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), self.run.faults.stall)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiter = None
            if self._disconnected:
                raise _Disconnected
        if self.split:
            for i in range(0, len(frame), self.split):
                await send({"type": "http.response.body", "body": frame[i:i + self.split], "more_body": True})
        else:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        # Sends rarely suspend, so give other connections (and the disconnect watcher) a turn after each frame.
        await asyncio.sleep(0)
