"""Bearer tokens asked for on every request: Entra ID on Azure OpenAI, or any callable key.

``ResponsesClient(..., azure_ad_token_provider=provider)`` (or ``api_key=provider``) works as in the openai SDK, so
``get_bearer_token_provider(DefaultAzureCredential(), "https://cognitiveservices.azure.com/.default")`` can be passed
as it is. The provider (sync, run in a worker thread since it may do network I/O, or async) is called for each
request; when the service answers 401 the token may just have expired, so it is asked once more and the request
sent again. Tokens are only ever put in the request's header: never stored, logged, or shown in a ``repr``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx

from ._errors import ConfigurationError

__all__ = ["BearerTokenAuth", "TokenProvider"]

#: A callable that returns a bearer token (or an awaitable of one).
TokenProvider = Callable[[], "str | Awaitable[str]"]


class BearerTokenAuth(httpx.Auth):
    """httpx authentication that asks ``provider`` for a token on every request, and once more after a 401."""

    def __init__(self, provider: TokenProvider) -> None:
        if not callable(provider):
            raise ConfigurationError("A token provider must be callable (it is asked for a token on every request).")
        self._provider = provider

    def __repr__(self) -> str:
        return f"BearerTokenAuth({getattr(self._provider, '__name__', type(self._provider).__name__)})"

    async def _token(self) -> str:
        provider = self._provider
        if inspect.iscoroutinefunction(provider) or inspect.iscoroutinefunction(type(provider).__call__):
            value = await provider()  # type: ignore[misc]
        else:
            value = await asyncio.to_thread(provider)
            if inspect.isawaitable(value):
                value = await value
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"The token provider returned {type(value).__name__}, not a token string; it "
                                     "must return the bearer token to send.")
        return value

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._token()}"
        response = yield request
        if response.status_code == 401:  # it may have expired since it was issued: ask for a fresh one, once
            request.headers["Authorization"] = f"Bearer {await self._token()}"
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("agent-nb's clients are asynchronous; BearerTokenAuth has no synchronous flow")
        yield request  # pragma: no cover - makes this a generator
