"""Taking over the items of a batch's owners that are gone (their lease ran out, or their process here died).

What happens to each depends on how far its owner got, as the ledger recorded it before any request was sent: a
``claimed`` item was never sent, so it goes back to the queue; a ``submitting`` one whose response id never came back
may or may not have started at the service, so it fails as of unknown fate rather than risk paying for it twice; any
other is followed from its response id, never created again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import StoredRunNotFound
from .._store import RunRecord, RunStore
from ._flight import Flight
from ._followed import follow
from ._outcomes import UNKNOWN_FATE, Outcome, error_of

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["take_over"]


async def take_over(engine: Engine) -> None:
    """Take over the items of owners that are gone, and follow each from its run's record."""
    items = await engine.io(engine.ledger.adopt, engine.name, engine.owner)
    for item in items:
        if item.key in engine.flights:
            continue
        record = await engine.io(_stored, engine.store, item.run_id)
        flight = Flight(item)
        response_id = item.response_id or (record.response_id if record is not None else None)
        if item.status == "claimed":  # its create was never sent: it goes back to the queue
            engine.writes.item(item.key, status="pending", attempts=max(0, item.attempts - 1))
            if record is not None:
                engine.writes.run(engine.store.delete, record.run_id)
            continue
        if response_id is None:
            engine.flights[item.key] = flight
            engine.finished(flight, Outcome("failed", error_of(UNKNOWN_FATE, "The process creating this item's "
                          "run stopped before the service confirmed it, so whether it started is unknown; it "
                          "was not started again. batch.retry_failed() starts it again.")))
            continue
        flight.response_id = response_id
        engine.flights[item.key] = flight
        if item.status != "running":
            engine.writes.item(item.key, status="running", response_id=response_id)
        if engine.fast:
            engine.poller.schedule(flight, 0.0)
        else:
            engine.spawn(follow(engine, flight, resume=True))


def _stored(store: RunStore, run_id: str | None) -> RunRecord | None:
    if run_id is None:
        return None
    try:
        return store.get(run_id)
    except StoredRunNotFound:
        return None
