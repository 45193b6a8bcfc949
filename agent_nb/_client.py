"""The Responses API over httpx: requests, error mapping, retries with backoff, and one SSE connection at a time.

Retries here are only those that cannot duplicate work: idempotent reads and cancels, and a create that the service
rejected outright (429/5xx) or that never left this machine (connection refused). A create whose fate is unknown
(the connection dropped after the request was sent) is reported, not repeated.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import Endpoint, resolve_endpoint
from ._credentials import BearerTokenAuth, TokenProvider
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionLost,
    RunExpired,
    RunNotFound,
    ServiceUnavailable,
)
from ._sse import SSEDecoder

__all__ = ["ResponsesClient", "RetryPolicy"]

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up.

    Args:
        max_retries: consecutive failed attempts (without progress in between) before giving up.
        initial_delay: first backoff delay in seconds; it doubles each attempt, with full jitter.
        max_delay: the largest backoff delay.
        stall_timeout: seconds without a byte on a stream before it counts as dropped and is resumed.
        connect_timeout: seconds to establish a connection.
    """

    max_retries: int = 6
    initial_delay: float = 0.5
    max_delay: float = 8.0
    stall_timeout: float = 60.0
    connect_timeout: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Backoff before retry number ``attempt`` (1-based), never shorter than the service's ``Retry-After``."""
        ceiling = min(self.max_delay, self.initial_delay * (2 ** (attempt - 1)))
        jittered = random.uniform(ceiling / 2, ceiling)
        return max(jittered, retry_after or 0.0)


class Retryable(Exception):
    """A failure worth retrying: a transport error, a stall, or a 429/5xx answer.

    ``repeatable`` says whether a create that met it may be sent again without risking a second run: true when the
    service answered (429/5xx refuse the request) or the connection never opened; false for a stall, after which it
    is unknown whether the run started. ``unreachable`` marks a connection that could not be opened at all.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None, error: Exception | None = None,
                 repeatable: bool = True, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.error = error
        self.repeatable = repeatable
        self.unreachable = unreachable


class ResponsesClient:
    """An async client for the Responses API endpoints agent-nb uses.

    Args:
        base_url: API base URL (``…/v1``); defaults to the environment, else the bundled mock server.
        api_key: the key; defaults to the environment. It is sent in headers only, never stored or logged.
        retry: the retry and stall policy.
        timeout: seconds for ordinary (non-streaming) requests.
    """

    def __init__(self, base_url: str | None = None, api_key: str | TokenProvider | None = None, *,
                 retry: RetryPolicy | None = None, timeout: float = 60.0, endpoint: Endpoint | None = None,
                 azure_ad_token_provider: TokenProvider | None = None, max_connections: int = 200) -> None:
        provider = azure_ad_token_provider or (api_key if callable(api_key) else None)
        key = None if callable(api_key) else api_key
        self.endpoint = endpoint or resolve_endpoint(base_url, key, token_provider=provider)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_connections = max_connections
        #: Called with the status and headers of every answer (a batch steers its pace by the rate-limit headers).
        self.on_answer: Callable[[int, httpx.Headers], None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    def __repr__(self) -> str:
        return f"ResponsesClient(base_url={self.base_url!r})"

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            self._loop = loop
            self._http = httpx.AsyncClient(
                base_url=self.base_url + "/",
                headers={**self.endpoint.headers(), "User-Agent": "agent-nb"},
                timeout=httpx.Timeout(self.timeout, connect=self.retry.connect_timeout),
                limits=httpx.Limits(max_connections=self.max_connections,
                                    max_keepalive_connections=min(self.max_connections, 200)),
                auth=BearerTokenAuth(self.endpoint.token_provider) if self.endpoint.token_provider else None,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None

    # -- requests ---------------------------------------------------------------------------------------------
    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /responses`` without streaming; retried only where a retry cannot start a second run."""
        return await self._with_retries(lambda: self._create_once(body), what="start the run")

    async def create_once(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """One ``POST /responses`` attempt: :class:`Retryable` for an answer or failure worth retrying (its
        ``repeatable`` says whether the create may be sent again), :class:`ConnectionLost` when its fate is unknown."""
        return await self._create_once(body)

    async def retrieve_once(self, response_id: str) -> dict[str, Any]:
        """One ``GET /responses/{id}`` attempt: :class:`Retryable` for a failure worth retrying."""
        return await self._idempotent_once("GET", f"responses/{response_id}", response_id)

    async def _create_once(self, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client().post("responses", json=dict(body))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _unreachable(self.base_url, exc) from exc
        except httpx.TransportError as exc:
            raise ConnectionLost(
                f"The connection to {self.base_url} failed after the request was sent ({_describe(exc)}), so it is "
                "unknown whether the run started. agent-nb did not retry, to avoid starting it twice.",
                token=None, cause=exc) from exc
        self._observe(response)
        return _json_or_raise(response, None)

    async def retrieve(self, response_id: str) -> dict[str, Any]:
        """``GET /responses/{id}``, retried on transport errors and 429/5xx."""
        return await self._with_retries(lambda: self._idempotent_once("GET", f"responses/{response_id}", response_id),
                                        what=f"retrieve {response_id}")

    async def cancel(self, response_id: str) -> dict[str, Any]:
        """``POST /responses/{id}/cancel`` (idempotent, so retried)."""
        return await self._with_retries(
            lambda: self._idempotent_once("POST", f"responses/{response_id}/cancel", response_id),
            what=f"cancel {response_id}")

    async def _idempotent_once(self, method: str, url: str, response_id: str) -> dict[str, Any]:
        """One attempt at a request that is safe to repeat: any transport error is worth a retry."""
        try:
            response = await self._client().request(method, url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _unreachable(self.base_url, exc) from exc
        except httpx.TransportError as exc:
            raise Retryable(_describe(exc), error=exc) from exc
        self._observe(response)
        return _json_or_raise(response, response_id)

    def _observe(self, response: httpx.Response) -> None:
        if self.on_answer is not None:
            self.on_answer(response.status_code, response.headers)

    async def _with_retries(self, attempt: Any, *, what: str) -> dict[str, Any]:
        failures = 0
        unreachable = True  # every attempt so far failed to connect at all
        while True:
            try:
                return await attempt()  # type: ignore[no-any-return]
            except Retryable as exc:
                failures += 1
                unreachable = unreachable and exc.unreachable
                if failures > self.retry.max_retries:
                    raise exhausted(exc, what, failures, self.base_url if unreachable else None) from exc.error
                await asyncio.sleep(self.retry.delay(failures, exc.retry_after))

    # -- streaming (one connection; resuming is the caller's job) ----------------------------------------------
    def stream_create(self, body: Mapping[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """``POST /responses`` with ``stream: true``: the events of one connection, in the batches they arrive in."""
        return self._events("POST", "responses", json={**body, "stream": True}, response_id=None)

    def stream_resume(self, response_id: str, starting_after: int | None) -> AsyncIterator[list[dict[str, Any]]]:
        """``GET /responses/{id}?stream=true[&starting_after=N]``: the events of one connection, in batches."""
        params: dict[str, Any] = {"stream": "true"}
        if starting_after is not None and starting_after >= 0:
            params["starting_after"] = starting_after
        return self._events("GET", f"responses/{response_id}", params=params, response_id=response_id)

    async def _events(self, method: str, url: str, *, response_id: str | None, **kwargs: Any
                      ) -> AsyncIterator[list[dict[str, Any]]]:
        timeout = httpx.Timeout(self.timeout, connect=self.retry.connect_timeout, read=self.retry.stall_timeout)
        started = False
        try:
            async with self._client().stream(method, url, timeout=timeout,
                                             headers={"Accept": "text/event-stream"}, **kwargs) as response:
                self._observe(response)
                if response.status_code != 200:
                    await response.aread()
                    _json_or_raise(response, response_id)
                decoder = SSEDecoder()
                chunks = response.aiter_raw() if "content-encoding" not in response.headers else \
                    response.aiter_bytes()
                feed = decoder.feed
                async for chunk in chunks:
                    try:
                        events = feed(chunk)
                    except ValueError as exc:
                        raise APIError(f"The service sent a stream event that is not valid JSON ({exc}); this is a "
                                       "fault of the server, not of the run.", status_code=200) from exc
                    if events:
                        started = True
                        yield events
        except httpx.ReadTimeout as exc:
            raise Retryable(f"no data for {self.retry.stall_timeout:g}s (stalled stream)", error=exc,
                            repeatable=False) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _unreachable(self.base_url, exc) from exc
        except httpx.TransportError as exc:
            if method == "POST" and not started:
                raise ConnectionLost(
                    f"The connection to {self.base_url} dropped before the service confirmed the run "
                    f"({_describe(exc)}), so it is unknown whether it started. agent-nb did not retry, to avoid "
                    "starting it twice.", token=None, cause=exc) from exc
            raise Retryable(f"connection dropped ({_describe(exc)})", error=exc) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unreachable(base_url: str, exc: Exception) -> Retryable:
    return Retryable(f"could not connect to {base_url} ({_describe(exc)})", error=exc, unreachable=True)


def exhausted(exc: Retryable, what: str, failures: int, unreachable: str | None = None) -> ServiceUnavailable:
    """The error for a request that failed ``failures`` times in a row; ``unreachable`` is the server's URL when no
    attempt could even connect to it."""
    if isinstance(exc.error, APIError):
        error = exc.error
        return ServiceUnavailable(f"Could not {what}: the service kept answering {error.status_code} "
                                  f"({error.message}) through {failures} attempts.",
                                  status_code=error.status_code, code=error.code, body=error.body)
    if unreachable is not None:
        return ServiceUnavailable(f"Could not {what}: the server at {unreachable} is not reachable ({failures} "
                                  "attempts to connect failed). Is it running?", status_code=0)
    return ServiceUnavailable(f"Could not {what}: {exc.reason}, {failures} attempts in a row.", status_code=0)


def _retry_after(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _json_or_raise(response: httpx.Response, response_id: str | None) -> dict[str, Any]:
    """The JSON body of a 2xx answer; otherwise the matching agent-nb error (or Retryable for 429/5xx)."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            data = response.json()
        except ValueError:
            raise APIError(f"The service answered {status} with a body that is not JSON.", status_code=status) \
                from None
        if not isinstance(data, dict):
            raise APIError(f"The service answered {status} with unexpected JSON.", status_code=status, body=data)
        return data
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        body, error = response.text, None
    if isinstance(error, dict):
        message, code, param = str(error.get("message") or ""), error.get("code"), error.get("param")
    else:
        message, code, param = (response.text or response.reason_phrase)[:300], None, None
    kwargs: dict[str, Any] = {"status_code": status, "code": code, "param": param, "body": body}
    if status in _RETRYABLE_STATUS:
        raise Retryable(f"the service answered {status}: {message}", retry_after=_retry_after(response.headers),
                        error=APIError(message, **kwargs))
    if status in (401, 403):
        raise AuthenticationError(f"The service refused the credentials ({status}): {message} Check OPENAI_API_KEY "
                                  "(or AZURE_OPENAI_API_KEY, or the api_key argument).", **kwargs)
    if status == 404 and response_id is not None:
        raise RunNotFound(f"The service has no response '{response_id}': it may have been deleted, or it is past "
                          f"its retention window. ({message})", response_id=response_id)
    if status == 400 and response_id is not None and "no longer be streamed" in message:
        raise RunExpired(f"Response '{response_id}' can no longer be streamed: its resume window has passed. Its "
                         "final result may still be retrieved by polling for a while.", response_id=response_id)
    raise BadRequestError(f"The service rejected the request ({status}): {message}", **kwargs)
