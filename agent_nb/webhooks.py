"""Learn of a run's end from the service's webhook instead of polling for it.

:class:`WebhookReceiver` checks each delivery's Standard Webhooks signature (with the ``standardwebhooks`` package:
a bad signature, or a timestamp older or newer than the tolerance, which is how replays are refused, is a 400),
drops a ``webhook-id`` it has already handled, fetches the response the event names and records its outcome in the
run store, so a run started with ``options={"notify": "webhook"}`` (which waits on the store) returns at once.
Deliveries can come late, twice or out of order: only an unfinished run still at that response is ever written, and
its outcome comes from the Response object fetched then, never from the event alone.

Use :meth:`WebhookReceiver.handle` from any web framework, or mount :meth:`WebhookReceiver.app` (Starlette)::

    receiver = WebhookReceiver(os.environ["OPENAI_WEBHOOK_SECRET"], store=agent.store, client=agent.client)
    app.mount("/openai-webhooks", receiver.app())
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._client import ResponsesClient
from ._errors import AgentNBError, RunNotFound
from ._items import OutputItems
from ._polling import output_text
from ._store import RunStore

__all__ = ["InvalidWebhook", "WebhookOutcome", "WebhookReceiver"]

_TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.cancelled", "response.incomplete"})


class InvalidWebhook(AgentNBError):
    """A delivery that is not from the service: a bad signature, missing headers, a stale timestamp, bad JSON."""


@dataclass(frozen=True)
class WebhookOutcome:
    """What a delivery did: ``applied`` (a run's outcome recorded), ``duplicate`` (its ``webhook-id`` was handled
    before), ``unknown_run`` (no run in the store is at that response), ``unchanged`` (the run had finished, or is a
    run with tools whose round the run itself answers) or ``ignored`` (not a response event)."""

    kind: str
    webhook_id: str
    response_id: str | None = None
    status: str | None = None


class WebhookReceiver:
    """Verifies the service's webhooks and records the outcomes they announce.

    Args:
        secret: the webhook's signing secret (``whsec_...``).
        store: the run store to record outcomes in.
        client: fetches the response an event names (its status and final text).
        remember: how many ``webhook-id`` values are kept to drop duplicates.
    """

    def __init__(self, secret: str, *, store: RunStore, client: ResponsesClient, remember: int = 10_000) -> None:
        self._webhook = Webhook(secret)
        self.store = store
        self.client = client
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def verify(self, body: bytes | str, headers: Mapping[str, str]) -> dict[str, Any]:
        """The event of a genuine delivery; :class:`InvalidWebhook` for any other."""
        try:
            event = self._webhook.verify(body, {k.lower(): v for k, v in headers.items()})
        except (WebhookVerificationError, ValueError) as exc:
            raise InvalidWebhook(f"This delivery is not a valid webhook from the service: {exc}.") from None
        if not isinstance(event, dict):
            raise InvalidWebhook("This delivery's body is not a JSON object.")
        return event

    async def handle(self, body: bytes | str, headers: Mapping[str, str]) -> WebhookOutcome:
        """Verify one delivery, then record the outcome it announces (at most once per ``webhook-id``)."""
        event = self.verify(body, headers)
        webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self._lock:
            if webhook_id in self._seen:
                return WebhookOutcome("duplicate", webhook_id)
            self._seen[webhook_id] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        data = event.get("data")
        response_id = data.get("id") if isinstance(data, dict) else None
        if event.get("type") not in _TERMINAL_EVENTS or not isinstance(response_id, str):
            return WebhookOutcome("ignored", webhook_id)
        try:
            return await self._record(webhook_id, response_id)
        except BaseException:
            with self._lock:
                self._seen.pop(webhook_id, None)  # not handled after all: a retry of it must be
            raise

    async def _record(self, webhook_id: str, response_id: str) -> WebhookOutcome:
        record = self.store.find(response_id)
        if record is None or record.response_id != response_id:
            return WebhookOutcome("unknown_run", webhook_id, response_id)
        if record.terminal or record.chain is not None:
            return WebhookOutcome("unchanged", webhook_id, response_id, record.status)
        try:
            response = await self.client.retrieve(response_id)
        except RunNotFound:
            return WebhookOutcome("unknown_run", webhook_id, response_id)
        status = str(response.get("status"))
        if status not in ("completed", "failed", "cancelled", "incomplete"):
            return WebhookOutcome("unchanged", webhook_id, response_id, status)  # an event ahead of its response
        text = output_text(response) or ""
        items = OutputItems()
        items.replace(response.get("output"), text)
        written = self.store.finish(record.run_id, response_id, status, text, items=items.stored(),
                                    error=response.get("error"))
        return WebhookOutcome("applied" if written else "unchanged", webhook_id, response_id, status)

    def app(self) -> Starlette:
        """An ASGI app that takes deliveries at ``POST /``: 200 for a handled (or duplicate) one, 400 otherwise."""

        async def receive(request: Request) -> Response:
            try:
                outcome = await self.handle(await request.body(), dict(request.headers))
            except InvalidWebhook as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse({"outcome": outcome.kind, "response_id": outcome.response_id})

        return Starlette(routes=[Route("/", receive, methods=["POST"])])
