"""How a run that cannot go on ends: its connection given up, the run gone from the service, or failed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

from ._errors import ConnectionLost, RunFailed, RunNotFound
from ._resume import GaveUp

if TYPE_CHECKING:
    from ._client import ResponsesClient
    from ._recorder import RunRecorder
    from ._token import ContinuationToken

__all__ = ["Endings"]


class Endings:
    """The endings half of ``BackgroundRun``: each records what it knows first, then raises a named error."""

    if TYPE_CHECKING:  # what BackgroundRun provides
        client: ResponsesClient
        recorder: RunRecorder | None
        response_id: str | None
        status: str
        error: dict[str, Any] | None
        ended_at: float | None
        connection_lost: ConnectionLost | None

        @property
        def text(self) -> str: ...
        @property
        def token(self) -> ContinuationToken | None: ...
        def _checkpoint(self, now: bool = False) -> None: ...
        def _notify(self, change: str) -> None: ...

    def _gave_up(self, exc: GaveUp) -> NoReturn:
        if exc.unreachable:
            message = (f"The server at {self.client.base_url} that ran this run is not reachable ({exc.attempts} "
                       f"attempts in a row; last: {exc.reason}).")
            self.error = {"code": "server_unreachable", "message": message}
            self._checkpoint(now=True)  # what arrived first, then the status
            if self.recorder is not None:
                self.recorder.status("lost", error=self.error)
        else:
            message = (f"The stream of {self.response_id} failed {exc.attempts} times in a row without progress "
                       f"(last: {exc.reason}).")
        self._lost(message, None)

    def _lost(self, message: str, cause: BaseException | None) -> NoReturn:
        lost = ConnectionLost(message + (" Resume with the run's token to continue where it stopped."
                                         if self.token else ""), token=self.token, text=self.text, cause=cause)
        self.connection_lost = lost
        self._notify("status")
        raise lost

    def _gone(self, exc: RunNotFound) -> NoReturn:
        """The service no longer has the run (deleted, or past its retention): it is ``lost`` for good."""
        self._checkpoint(now=True)  # what arrived first, then the status
        self.status = "lost"
        self.ended_at = time.time()
        self.error = {"code": "run_not_found", "message": str(exc)}
        if self.recorder is not None:
            self.recorder.status("lost", error=self.error)
        self._notify("status")
        raise exc

    def failure(self) -> RunFailed:
        error = self.error or {}
        code, message = error.get("code"), error.get("message") or "no reason given"
        return RunFailed(f"Run {self.response_id} failed: {message}" + (f" ({code})" if code else ""),
                         response_id=self.response_id, code=code, error_message=message, text=self.text)
