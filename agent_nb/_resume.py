"""A stream of one run's events that survives drops: it reconnects with ``starting_after`` until the run ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from ._client import ResponsesClient, Retryable, exhausted
from ._errors import ConnectionLost, RunError

__all__ = ["ENDED_EVENT", "TERMINAL_EVENTS", "GaveUp", "ResumableStream"]

TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})

#: The synthetic event yielded when a stream ends without a terminal event and the run turns out to be over
#: (a cancelled run's stream simply ends).
ENDED_EVENT = "agent_nb.ended"


class ResumableStream:
    """Follows one run's events across connections, nothing repeated and nothing skipped.

    Args:
        client: the API client.
        response_id: the run, when already known (resuming); ``None`` when ``create_body`` starts it.
        after: the last sequence number already received; ``None`` replays from the start.
        create_body: the body of a streamed create, for the first connection.
        on_reconnecting: called with a reason and the attempt number before each reconnection.
        resumable: False for a response created without ``background``: the service cannot stream it again, so a
            drop ends it with :class:`ConnectionLost` at once instead of retrying what cannot work.
    """

    def __init__(self, client: ResponsesClient, response_id: str | None = None, after: int | None = None, *,
                 create_body: Mapping[str, Any] | None = None,
                 on_reconnecting: Callable[[str, int], None] | None = None, resumable: bool = True) -> None:
        if response_id is None and create_body is None:
            raise ValueError("ResumableStream needs a response id or a create body")
        self.client = client
        self.response_id = response_id
        self.after = after
        self._create_body = create_body
        self._on_reconnecting = on_reconnecting
        self.resumable = resumable
        self.reconnects = 0

    async def batches(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every event after ``after``, in the batches they arrived in; ends after the terminal event.

        A stream that ends without a terminal event (a cancelled run's does) ends with a synthetic
        ``agent_nb.ended`` event carrying the Response.

        Raises:
            GaveUp: ``max_retries`` attempts in a row failed without progress.
            ConnectionLost: a create whose fate is unknown, or a drop that cannot be resumed.
            ServiceUnavailable: a streamed create the service kept refusing (429/5xx), as for a polled create.
        """
        failures = 0
        unreachable = True  # every reconnection since the last progress (not the drop before them) failed to connect
        policy = self.client.retry
        while True:
            retry_after: float | None = None
            if self.response_id is None:
                assert self._create_body is not None
                connection = self.client.stream_create(self._create_body)
            else:
                connection = self.client.stream_resume(self.response_id, self.after)
            try:
                async for batch in connection:
                    after = self.after
                    if after is not None and _seq(batch[0], after + 1) <= after:
                        # A full replay (a token without a sequence number): skip what was already received.
                        batch = [event for event in batch if _seq(event, after + 1) > after]
                        if not batch:
                            continue
                    last = batch[-1]
                    seq = last.get("sequence_number")
                    if isinstance(seq, int):
                        self.after = seq
                    failures, unreachable = 0, True
                    if self.response_id is None:
                        self._find_response_id(batch)
                    yield batch
                    if last.get("type") in TERMINAL_EVENTS or last.get("type") == "error":
                        return
                # The connection ended cleanly without a terminal event: cancelled, deleted, or cut by a proxy.
                if self.response_id is None:
                    raise ConnectionLost("The stream ended before the service confirmed the run.", token=None)
                snapshot = await self.client.retrieve(self.response_id)  # RunNotFound if it was deleted
                if snapshot.get("status") in TERMINAL_STATUSES:
                    yield [{"type": ENDED_EVENT, "response": snapshot, "sequence_number": self.after}]
                    return
                if not self.resumable:
                    raise self._not_resumable("the stream ended early")
                reason = "the stream ended early"
            except Retryable as exc:
                if self.response_id is None and not exc.repeatable:
                    raise ConnectionLost(f"Could not start the run: {exc.reason}; it is unknown whether it started, "
                                         "so agent-nb did not retry, to avoid starting it twice.", token=None,
                                         cause=exc.error) from exc
                if self.response_id is not None and not self.resumable:
                    raise self._not_resumable(exc.reason) from exc
                reason, retry_after = exc.reason, exc.retry_after
                if failures or self.response_id is None:
                    unreachable = unreachable and exc.unreachable
                if self.response_id is None and failures + 1 > policy.max_retries:
                    # The service refused the create outright every time (or it never left this machine).
                    raise exhausted(exc, "start the run", failures + 1,
                                    self.client.base_url if unreachable else None) from exc.error
            finally:
                await _close(connection)
            failures += 1
            if failures > policy.max_retries:
                raise GaveUp(reason, failures, unreachable=unreachable)
            self.reconnects += 1
            if self._on_reconnecting is not None:
                self._on_reconnecting(reason, failures)
            await asyncio.sleep(policy.delay(failures, retry_after))

    def _not_resumable(self, reason: str) -> ConnectionLost:
        return ConnectionLost(f"The connection to {self.client.base_url} dropped ({reason}), and response "
                              f"{self.response_id} was created without background=True, so it ended with its "
                              "connection and cannot be resumed. Start runs with background=True to make them "
                              "resumable.", token=None)

    def _find_response_id(self, batch: list[dict[str, Any]]) -> None:
        for event in batch:
            response = event.get("response")
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                self.response_id = response["id"]
                return


def _seq(event: dict[str, Any], default: int) -> int:
    seq = event.get("sequence_number")
    return seq if isinstance(seq, int) else default


class GaveUp(RunError):
    """Raised when reconnection attempts ran out; the caller turns it into ConnectionLost with the text.

    ``unreachable`` is true when none of the failed attempts could even connect to the server.
    """

    def __init__(self, reason: str, attempts: int, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.unreachable = unreachable


async def _close(connection: AsyncIterator[list[dict[str, Any]]]) -> None:
    aclose = getattr(connection, "aclose", None)
    if aclose is not None:
        await aclose()
