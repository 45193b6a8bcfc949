"""The full path of a batch item: an ordinary :class:`BackgroundRun`, for streamed items and for agents with
function tools (whose tool rounds run here, between responses)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from .._errors import AgentNBError, ConnectionLost
from ._outcomes import Outcome, error_of, of_exception, of_response

if TYPE_CHECKING:
    from .._run import BackgroundRun
    from ._engine import Engine
    from ._flight import Flight

__all__ = ["follow"]

#: Times in a row a run whose stream was given up on is followed again, without getting further, before its item
#: counts as failed (with a growing wait in between: a rate limit that lasts minutes is waited out).
_RECONNECTS = 8


async def follow(engine: Engine, flight: Flight, *, resume: bool) -> None:
    """Start (or, for an item taken over, resume by its run id) the item's run and follow it to its end."""
    spec = engine.spec
    stream = spec.mode == "stream"
    try:
        if resume:
            run = engine.agent.resume(flight.run_id, stream=stream, poll_interval=spec.poll_interval,
                                      raise_on_failure=False)
        else:
            await engine.pacer.acquire(spec.estimated_tokens(flight.input))
            if engine.cancelling:
                engine.finished(flight, Outcome("cancelled", error_of("cancelled", "The batch was cancelled before "
                                                                      "this item started.")), record=False)
                return
            run = engine.agent.start(flight.input, options=engine.run_options(flight), stream=stream,
                                     poll_interval=spec.poll_interval, raise_on_failure=False, launch=False,
                                     run_id=flight.run_id)
    except AgentNBError as exc:
        engine.finished(flight, of_exception(exc))
        return
    flight.run = run
    if not resume:
        await engine.sending(flight)
    run.on_started = lambda started: engine.started(flight, str(started.response_id), started.status, record=False)
    if run.response_id is not None and resume:
        engine.started(flight, run.response_id, run.status, record=False)
    stuck = 0  # times in a row the run was followed again without getting any further
    while True:
        position = run.sequence_number
        try:
            await run.wait()
            break
        except ConnectionLost as exc:  # given up for now; the run goes on at the service, so follow it again
            stuck = stuck + 1 if run.sequence_number == position else 0
            if run.response_id is None or stuck > _RECONNECTS:
                engine.finished(flight, of_exception(exc), record=False)
                return
        except Exception as exc:
            engine.finished(flight, of_exception(exc), record=False)
            return
        await asyncio.sleep(min(10.0, 0.25 * 2 ** stuck) if stuck else 0.0)
        await engine.pacer.acquire()
        run = flight.run = engine.agent.resume(flight.run_id, stream=stream, poll_interval=spec.poll_interval,
                                               raise_on_failure=False)
    if run.status == "waiting":
        await _refuse_approval(run)
        reason = "The run waits for a person to approve a tool call; batches run unattended, so it was cancelled."
        engine.finished(flight, Outcome("failed", error_of("needs_approval", reason)), record=False)
        return
    outcome = of_response({"status": run.status, "error": run.error})
    engine.finished(flight, outcome, usage=run.usage, response_id=run.response_id, record=False)


async def _refuse_approval(run: BackgroundRun) -> None:
    with contextlib.suppress(AgentNBError):
        await run.cancel()
