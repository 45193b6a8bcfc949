"""Following a run to its end in a task: ``start()``, ``wait()``, ``await run``, and ``cancel()``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, NoReturn

from ._errors import RunFailed, RunNotFound
from ._updates import AgentResponse, AgentResponseUpdate

if TYPE_CHECKING:
    from ._approvals import ApprovalRequest
    from ._client import ResponsesClient

__all__ = ["Following"]


class Following:
    """The following half of ``BackgroundRun``: one task per run, which streams, polls or waits for a webhook."""

    if TYPE_CHECKING:  # what BackgroundRun provides
        client: ResponsesClient
        response_id: str | None
        status: str
        mode: str
        raise_on_failure: bool
        _task: asyncio.Task[AgentResponse] | None

        @property
        def terminal(self) -> bool: ...
        @property
        def user_input_requests(self) -> list[ApprovalRequest]: ...
        def failure(self) -> RunFailed: ...
        def updates(self) -> AsyncGenerator[AgentResponseUpdate, None]: ...
        async def _poll_to_end(self) -> None: ...
        async def _webhook_to_end(self) -> None: ...
        def to_response(self) -> AgentResponse: ...
        def _notify(self, change: str) -> None: ...
        def _gone(self, exc: RunNotFound) -> NoReturn: ...
        def _absorb_snapshot(self, response: dict[str, Any]) -> None: ...

    def start(self) -> asyncio.Task[AgentResponse]:
        """Follow the run to its end in a task on the running loop (idempotent while it runs)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run_to_end())
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run_to_end(self) -> AgentResponse:
        try:
            if self.terminal:  # a finished run re-attached from the store: nothing left to follow
                if self.status == "failed" and self.raise_on_failure:
                    raise self.failure()
            elif self.status == "waiting" and self.user_input_requests:
                pass  # it goes on once a person answers
            elif self.mode == "poll":
                await self._poll_to_end()
            elif self.mode == "webhook":
                await self._webhook_to_end()
            else:
                async for _ in self.updates():
                    pass
            return self.to_response()
        finally:
            self._notify("done")

    async def wait(self) -> AgentResponse:
        """Follow the run to its end and return the response (raises RunFailed / ConnectionLost)."""
        return await self.start()

    def __await__(self) -> Any:
        return self.wait().__await__()

    async def cancel(self) -> AgentResponse:
        """Ask the service to cancel the run; the state becomes ``cancelled`` (or stays as it ended)."""
        if self.response_id is None:
            raise RunFailed("This run has not started yet, so there is nothing to cancel.")
        try:
            response = await self.client.cancel(self.response_id)
        except RunNotFound as exc:
            self._gone(exc)
        self._absorb_snapshot(response)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        return self.to_response()
