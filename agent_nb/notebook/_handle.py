"""A run as a notebook sees it: started or re-attached on the background loop, awaitable, resumable, cancellable."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import time
from collections.abc import Callable, Generator
from typing import Any

from .._agent import Agent, AgentSession
from .._errors import AgentNBError, ConnectionLost, RunNotFound, StoreError
from .._loop import BackgroundLoop
from .._run import BackgroundRun
from .._token import ContinuationToken
from .._updates import AgentResponse
from ._style import FINISHED

__all__ = ["NotebookRun"]

Listener = Callable[["NotebookRun", str], None]


class NotebookRun:
    """A background run followed on agent-nb's own loop, so it goes on while cells run (even blocking ones).

    ``text``, ``status``, ``token`` and ``error`` change as the run goes; ``wait()`` blocks until it ends, ``await
    run`` waits without blocking, ``resume()`` continues from the saved token after the connection was given up,
    and ``cancel()`` asks the service to stop it. Outcomes are reported, not raised: a failed run has
    ``status == "failed"`` and ``error``.

    ``status`` is the run's status, or ``reconnecting`` / ``disconnected`` (the connection was given up; the run
    may still be going on the service, so Resume and Cancel stay available) / ``lost`` (the service no longer has
    it) / ``error`` (it could not be started or followed).
    """

    def __init__(self, agent: Agent, *, name: str | None = None, loop: BackgroundLoop | None = None) -> None:
        self.agent = agent
        self.name = name
        self.loop = loop or BackgroundLoop.get()
        self.run: BackgroundRun | None = None
        self.phase = "starting"
        self.message: str | None = None
        self.notice: str | None = None
        self.store_warning: str | None = None
        self.cell_key: tuple[str, str] | None = None  # the %%agent cell (and prompt) that started it
        #: Names this run's outputs in the page, so that the live view can find its saved view.
        self.key = secrets.token_hex(8)
        self._future: concurrent.futures.Future[AgentResponse | None] | None = None
        self._listeners: list[Listener] = []
        self._started_at = time.time()

    # -- starting -----------------------------------------------------------------------------------------------
    @classmethod
    def start(cls, agent: Agent, prompt: str, *, options: dict[str, Any] | None = None,
              session: AgentSession | None = None, stream: bool = True, poll_interval: float = 2.0,
              after: NotebookRun | None = None, name: str | None = None) -> NotebookRun:
        """Start a new background run (after ``after`` has ended, for a follow-up in the same session)."""
        handle = cls(agent, name=name)

        def make() -> BackgroundRun:
            return agent.start(prompt, session=session, options={**(options or {}), "name": name}, stream=stream,
                               poll_interval=poll_interval, raise_on_failure=False, launch=False)

        handle._drive(make, after)
        return handle

    @classmethod
    def attach(cls, agent: Agent, target: Any, *, stream: bool = True, poll_interval: float = 2.0,
               name: str | None = None) -> NotebookRun:
        """Re-attach to a run by stored run id or continuation token: stored text at once, then the rest."""
        handle = cls(agent, name=name)
        run = agent.resume(target, stream=stream, poll_interval=poll_interval, raise_on_failure=False)
        if handle.name is None and run.record is not None:
            handle.name = run.record.name
        if run.record is not None:
            handle._started_at = run.record.created_at
        handle._drive(lambda: run, None)
        return handle

    def _drive(self, make: Callable[[], BackgroundRun], after: NotebookRun | None) -> None:
        if after is None or after.finished:
            # Build the run now, so run_id, the stored text and the token are there when the cell returns; only a
            # follow-up in a session must wait, since its request names the previous response.
            run = make()
            self._adopt(run)
            make = lambda: run  # noqa: E731
        self._future = self.loop.submit(self._follow(make, after))

    def _adopt(self, run: BackgroundRun) -> None:
        self.run = run
        if run.recorder is not None:
            run.recorder.on_error = self._store_failed  # shown in the view, not warned on the kernel's stderr
        run.add_observer(self._on_run_change)

    async def _follow(self, make: Callable[[], BackgroundRun], after: NotebookRun | None) -> AgentResponse | None:
        try:
            if after is not None and after._future is not None and not after._future.done():
                self.notice = "Waiting for the previous run in this session to finish…"
                self._emit("status")
                await asyncio.wrap_future(after._future)
                self.notice = None
            run = make()
            self._adopt(run)
            self.phase = run.status
            self._emit("status")
            response = await run.wait()
            self.phase = run.status
            self.message = _error_message(run.error) if run.status == "failed" else None
            return response
        except ConnectionLost as exc:
            self.phase, self.message = "disconnected", str(exc)
        except RunNotFound as exc:
            self.phase, self.message = "lost", str(exc)
        except AgentNBError as exc:
            self.phase, self.message = "error", str(exc)
        except asyncio.CancelledError:
            if self.run is not None and self.run.terminal:
                self.phase = self.run.status
            raise
        except Exception as exc:  # shown in the widget rather than lost in a background thread
            self.phase, self.message = "error", f"{type(exc).__name__}: {exc}"
        finally:
            if self.finished:
                self.notice = None  # "still going: showing it again" and the like are no longer true
            self._emit("done")
        return None

    def _on_run_change(self, run: BackgroundRun, change: str) -> None:
        if change == "reconnecting":
            self.phase = "reconnecting"
            self.message = f"Connection dropped; reconnecting (attempt {run.reconnects})…"
        elif run.connection_lost is not None:
            self.phase, self.message = "disconnected", str(run.connection_lost)
        elif change in ("text", "status") and self.phase != run.status:
            self.phase = run.status
            self.message = _error_message(run.error) if run.status == "failed" else None
        self._emit(change)

    def _store_failed(self, error: StoreError) -> None:
        self.store_warning = f"The run goes on, but its record could not be saved: {error}"
        self._emit("store")

    # -- observing ----------------------------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, change: str) -> None:
        for listener in list(self._listeners):
            listener(self, change)

    @property
    def text(self) -> str:
        return self.run.text if self.run is not None else ""

    @property
    def items(self) -> list[dict[str, Any]]:
        """The run's output items in the store's form (message text as spans of ``text``)."""
        return self.run.stored_items if self.run is not None else []

    @property
    def requests(self) -> list[Any]:
        """The calls waiting for approval (while the run is ``waiting``)."""
        return self.run.user_input_requests if self.run is not None and self.phase == "waiting" else []

    def answer(self, request_id: str, approved: bool, reason: str | None = None, *, timeout: float = 30.0) -> None:
        """Approve or refuse a pending call (what the widget's buttons do); the last answer continues the run, and
        ``wait()`` then waits for it."""
        self.loop.submit(self._answer(request_id, approved, reason)).result(timeout)

    async def _answer(self, request_id: str, approved: bool, reason: str | None) -> None:
        run = self.run
        request = next((r for r in self.requests if r.id == request_id), None)
        if run is None or request is None:
            return
        request.approve() if approved else request.reject(reason)
        if run.status != "waiting":  # every request is answered: follow the run as it goes on
            self.phase = run.status
            self._emit("status")
            self._drive(lambda: run, None)

    @property
    def status(self) -> str:
        return self.phase

    @property
    def token(self) -> ContinuationToken | None:
        return self.run.token if self.run is not None else None

    @property
    def last_token(self) -> ContinuationToken | None:
        """The token of the last event received, also once the run has ended (it then replays the stream)."""
        run = self.run
        if run is None or run.response_id is None or not run.background:
            return None
        return ContinuationToken(run.response_id, run.sequence_number)

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    @property
    def response_id(self) -> str | None:
        return self.run.response_id if self.run is not None else None

    @property
    def reconnects(self) -> int:
        return self.run.reconnects if self.run is not None else 0

    @property
    def error(self) -> str | None:
        return self.message if self.phase in ("failed", "disconnected", "lost", "error") else None

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (across resumes and kernels), until it ended; while the connection is
        lost it keeps counting, since the service may still be working on the run."""
        run = self.run
        ended = run.ended_at if run is not None else None
        if ended is None and self.finished:
            ended = time.time()  # never started, or could not be followed: stop the clock
        return (ended or time.time()) - self._started_at

    @property
    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    @property
    def finished(self) -> bool:
        """Nothing more will happen to this run from this kernel: it ended, the service lost it, or it failed to
        start."""
        return self.phase in FINISHED

    @property
    def can_resume(self) -> bool:
        return not self.running and not self.finished and self.run is not None and self.run.token is not None

    @property
    def can_cancel(self) -> bool:
        """Whenever the service may still be working on the run: while it streams, and after the connection was
        lost too (a run left going costs money)."""
        return self.response_id is not None and self.phase not in FINISHED and self.phase != "waiting" and \
            self.run is not None and self.run.background

    # -- acting -------------------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> AgentResponse | None:
        """Block until the run ends (or ``timeout`` seconds pass); returns its response."""
        assert self._future is not None
        try:
            return self._future.result(timeout)
        except concurrent.futures.CancelledError:
            return self.run.to_response() if self.run is not None else None

    def __await__(self) -> Generator[Any, None, AgentResponse | None]:
        assert self._future is not None
        return asyncio.wrap_future(self._future).__await__()

    def resume(self) -> NotebookRun:
        """Continue from the saved token after the connection was given up (what the Resume button does).

        The same run goes on: its text and position are exactly where the stream stopped, so nothing is fetched
        twice and nothing already shown is lost.
        """
        run = self.run
        if self.running or self.finished or run is None or run.token is None:
            return self
        self.message = None
        self.phase = "reconnecting"
        self._emit("status")
        self._drive(lambda: run, None)
        return self

    def cancel(self, timeout: float = 30.0) -> None:
        """Ask the service to cancel the run and wait for the answer."""
        self.loop.submit(self.cancel_async()).result(timeout)

    async def cancel_async(self) -> None:
        """Cancel on agent-nb's loop (what the Cancel button does); a failure to cancel is shown, not raised."""
        run = self.run
        if run is None or not self.can_cancel:
            return
        try:
            await run.cancel()
        except RunNotFound as exc:
            self.phase, self.message = "lost", str(exc)
        except AgentNBError as exc:
            self.message = f"Could not cancel: {exc}"
        else:
            self.phase = run.status
            self.message = None
        if self.finished:
            self.notice = None
        self._emit("status")
        if not self.running:
            self._emit("done")  # nothing else will say so: the run was not being followed

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<NotebookRun{label} {self.run_id or ''} {self.status}, {len(self.text)} chars>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Shown on its own in a cell: the live view while the run goes on, the saved view once it is over."""
        if self.finished:
            from ._card import RunCard

            return RunCard(self)._repr_mimebundle_(include=include, exclude=exclude)
        from ._widget import RunWidget

        return RunWidget.for_run(self)._repr_mimebundle_(include=include, exclude=exclude)


def _error_message(error: dict[str, Any] | None) -> str:
    if not error:
        return "The run failed without a reason from the service."
    message = error.get("message") or "no reason given"
    code = error.get("code")
    return f"{message} ({code})" if code else str(message)
