"""Webhooks, sent as the service sends them when a background response ends.

Each terminal status (``completed``, ``failed``, ``cancelled``, ``incomplete``) is POSTed to every configured URL as
``{"id": "evt_…", "object": "event", "created_at", "type": "response.<status>", "data": {"id": "resp_…"}}``,
signed as the Standard Webhooks spec says: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` =
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with the base64-decoded ``whsec_`` secret. A delivery that
gets no 2xx (or times out) is retried with backoff, with the same ``webhook-id``. Faults for testing receivers:
``delay=S``, ``drop=N`` (the next N deliveries are never sent), ``duplicate`` (each is sent twice), ``reorder=S``
(every other delivery, from the first after the faults are set, waits S seconds, so the next one overtakes it) and
``bad_signature``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from .errors import bad_request
from .records import new_id

__all__ = ["WebhookFaults", "WebhookSender", "sign"]

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before each retry of a delivery
_KEPT = 200  # deliveries kept for GET /mock/webhooks
_USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for a delivery."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class WebhookFaults:
    delay: float = 0.0
    drop: int = 0
    duplicate: bool = False
    reorder: float = 0.0
    bad_signature: bool = False

    @classmethod
    def parse(cls, text: str | None, *, param: str = "faults") -> WebhookFaults:
        values: dict[str, Any] = {}
        for part in re.split(r"[,\s]+", (text or "").strip()):
            if not part:
                continue
            key, _, raw = part.partition("=")
            if key in ("duplicate", "bad_signature"):
                values[key] = raw.lower() not in ("0", "false", "no", "off")
            elif key in ("delay", "reorder", "drop"):
                try:
                    number = int(raw) if key == "drop" else float(raw)
                except ValueError:
                    raise bad_request(f"Invalid webhook fault {part!r} in {param}: expected a number.",
                                      param=param) from None
                if not 0 <= number <= 3600:
                    raise bad_request(f"Invalid webhook fault {part!r} in {param}: expected 0 to 3600.", param=param)
                values[key] = number
            else:
                raise bad_request(f"Unknown webhook fault {key!r} in {param}. Known: delay, drop, duplicate, "
                                  "reorder, bad_signature.", param=param)
        return cls(**values)

    def __str__(self) -> str:
        parts = [f"delay={self.delay:g}" if self.delay else "", f"drop={self.drop}" if self.drop else "",
                 "duplicate" if self.duplicate else "", f"reorder={self.reorder:g}" if self.reorder else "",
                 "bad_signature" if self.bad_signature else ""]
        return ",".join(p for p in parts if p)


@dataclass
class WebhookSender:
    """Where and how the server sends its webhooks; ``deliveries`` records the latest deliveries' outcomes."""

    urls: list[str] = field(default_factory=list)
    secret: str | None = None
    faults: WebhookFaults = field(default_factory=WebhookFaults)
    timeout: float = 5.0
    deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_KEPT))
    _count: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def describe(self) -> dict[str, Any]:
        return {"urls": list(self.urls), "secret_set": self.secret is not None, "faults": str(self.faults),
                "deliveries": list(self.deliveries)}

    def configure(self, body: Any) -> None:
        """Apply ``PUT /mock/webhooks``: ``urls``, ``secret`` and ``faults``, each optional."""
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object with 'urls', 'secret' and/or 'faults'.")
        urls = body.get("urls", self.urls)
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                 for u in urls):
            raise bad_request("Invalid 'urls': expected a list of http(s) URLs.", param="urls")
        secret = body.get("secret", self.secret)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise bad_request("Invalid 'secret': expected a string such as 'whsec_...'.", param="secret")
        faults = WebhookFaults.parse(body["faults"]) if "faults" in body else self.faults
        self.urls, self.secret, self.faults = list(urls), secret, faults
        self._count = 0  # "every other delivery" counts from here

    def notify(self, response_id: str, status: str) -> None:
        """A background response ended: send its event to every URL, in the background."""
        if not self.urls or self.secret is None:
            return
        event_id = new_id("evt")
        event = {"id": event_id, "object": "event", "created_at": int(time.time()), "type": f"response.{status}",
                 "data": {"id": response_id}}
        body = json.dumps(event, separators=(",", ":"))
        for url in self.urls:
            self._count += 1
            if self.faults.drop:
                self.faults = replace(self.faults, drop=self.faults.drop - 1)
                self.deliveries.append({"webhook_id": None, "event": event_id, "url": url, "outcome": "dropped"})
                continue
            late = self.faults.reorder if self.faults.reorder and self._count % 2 == 1 else 0.0
            copies = 2 if self.faults.duplicate else 1
            webhook_id = "wh_" + secrets.token_hex(16)
            for _ in range(copies):
                task = asyncio.get_running_loop().create_task(
                    self._deliver(url, webhook_id, event_id, body, self.faults.delay + late))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, webhook_id: str, event_id: str, body: str, wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        record: dict[str, Any] = {"webhook_id": webhook_id, "event": event_id, "url": url, "attempts": 0,
                                  "outcome": "pending"}
        self.deliveries.append(record)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
                if delay:
                    await asyncio.sleep(delay)
                timestamp = int(time.time())
                secret = self.secret or ""
                signature = sign("whsec_" + base64.b64encode(b"not the secret").decode() if
                                 self.faults.bad_signature else secret, webhook_id, timestamp, body)
                record["attempts"] = attempt + 1
                try:
                    answer = await client.post(url, content=body, headers={
                        "content-type": "application/json", "user-agent": _USER_AGENT, "webhook-id": webhook_id,
                        "webhook-timestamp": str(timestamp), "webhook-signature": signature})
                except httpx.HTTPError as exc:
                    record["outcome"] = f"{type(exc).__name__}"
                    continue
                record["outcome"] = answer.status_code
                if 200 <= answer.status_code < 300:
                    return
        record["outcome"] = f"gave up after {record['attempts']} attempts (last: {record['outcome']})"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
