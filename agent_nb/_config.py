"""Where requests go and with which key: explicit arguments, then the environment, then the bundled mock server."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigurationError

__all__ = ["Endpoint", "bundled_endpoint", "endpoint_for", "resolve_endpoint"]

OPENAI_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Endpoint:
    """A resolved API endpoint. ``api_key`` never appears in ``repr`` and is never stored; with a
    ``token_provider`` (Entra ID), a bearer token is asked for on every request instead."""

    base_url: str
    kind: str  # "openai", "azure", "compatible" or "mock"
    api_key: str | None = field(default=None, repr=False, compare=False)
    token_provider: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        if not self.api_key or self.token_provider is not None:
            return {}
        if self.kind == "azure":
            return {"api-key": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}


def resolve_endpoint(base_url: str | None = None, api_key: str | None = None, *,
                     environ: dict[str, str] | None = None, start_mock: bool = True,
                     token_provider: Callable[[], Any] | None = None) -> Endpoint:
    """Pick the endpoint: explicit arguments override ``OPENAI_*``, which override ``AZURE_OPENAI_*``.

    With nothing configured, the bundled mock server is used (started in its own process if it is not running, and
    shared by every process on the machine), and a one-line notice says so. A ``token_provider`` (Entra ID) stands
    in for the key.
    """
    if token_provider is not None:
        endpoint = resolve_endpoint(base_url, api_key or "token-provider", environ=environ, start_mock=False) \
            if base_url is not None else _azure_from(environ)
        return Endpoint(endpoint.base_url, endpoint.kind, None, token_provider)
    env = os.environ if environ is None else environ
    if base_url is None and api_key is None:
        base_url = env.get("OPENAI_BASE_URL") or None
        api_key = env.get("OPENAI_API_KEY") or None
        if base_url is None and api_key is None:
            azure = env.get("AZURE_OPENAI_ENDPOINT")
            if azure:
                key = env.get("AZURE_OPENAI_API_KEY")
                if not key:
                    raise ConfigurationError("AZURE_OPENAI_ENDPOINT is set but AZURE_OPENAI_API_KEY is not; set the "
                                             "key (or pass api_key=...).")
                return Endpoint(_azure_v1(azure), "azure", key)
    elif base_url is None:
        base_url = env.get("OPENAI_BASE_URL") or None
    elif api_key is None:
        api_key = env.get("OPENAI_API_KEY") or None
    if base_url is None and api_key is None:
        if not start_mock:
            raise ConfigurationError("No endpoint configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a "
                                     "compatible server), or AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY.")
        return bundled_endpoint()
    if base_url is None:
        return Endpoint(OPENAI_URL, "openai", api_key)
    base_url = base_url.rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"The base URL must start with http:// or https://, got {base_url!r}.")
    kind = "openai" if base_url == OPENAI_URL else "azure" if ".openai.azure.com" in base_url else "compatible"
    return Endpoint(base_url, kind, api_key)


def _azure_from(environ: dict[str, str] | None) -> Endpoint:
    env = os.environ if environ is None else environ
    azure = env.get("AZURE_OPENAI_ENDPOINT") or env.get("OPENAI_BASE_URL")
    if not azure:
        raise ConfigurationError("A token provider needs an endpoint: pass base_url=... or set "
                                 "AZURE_OPENAI_ENDPOINT.")
    return Endpoint(_azure_v1(azure) if env.get("AZURE_OPENAI_ENDPOINT") else azure.rstrip("/"), "azure")


def _azure_v1(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/openai/v1") else endpoint + "/openai/v1"


_notice_lock = threading.Lock()
_announced: set[str] = set()


def bundled_endpoint() -> Endpoint:
    """The bundled mock server, started in its own process if it is not running; says so once per process."""
    from ._bundled import ensure_bundled

    server = ensure_bundled()
    with _notice_lock:
        if server.url not in _announced:
            _announced.add(server.url)
            print(f"agent-nb: no OPENAI_API_KEY or AZURE_OPENAI_ENDPOINT set, so using the bundled mock server at "
                  f"{server.url} (its own process, shared by every kernel on this machine; %agent mock stop stops "
                  "it).", file=sys.stderr)
    return Endpoint(server.url, "mock", "mock")


def endpoint_for(base_url: str, kind: str | None = None, *, environ: dict[str, str] | None = None) -> Endpoint:
    """The endpoint a stored run was recorded at, with the key the environment has for that endpoint and no other.

    A run of the bundled mock server is resumed wherever that server listens now. A key is only ever sent to the
    endpoint it was configured for, so a run recorded elsewhere is asked for without one (and a 401 says so).
    """
    if kind == "mock":
        return bundled_endpoint()
    base_url = base_url.rstrip("/")
    with contextlib.suppress(ConfigurationError):
        configured = resolve_endpoint(environ=environ, start_mock=False)
        if configured.base_url == base_url:
            return configured
    env = os.environ if environ is None else environ
    if base_url == OPENAI_URL and env.get("OPENAI_API_KEY"):
        return Endpoint(base_url, "openai", env["OPENAI_API_KEY"])
    guessed = kind or ("openai" if base_url == OPENAI_URL else "azure" if ".openai.azure.com" in base_url
                       else "compatible")
    return Endpoint(base_url, guessed, None)
