"""Where requests go and with which key: explicit arguments, then the environment, then the bundled mock server."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigurationError

__all__ = ["Endpoint", "resolve_endpoint"]

OPENAI_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Endpoint:
    """A resolved API endpoint. ``api_key`` never appears in ``repr`` and is never stored."""

    base_url: str
    kind: str  # "openai", "azure", "compatible" or "mock"
    api_key: str | None = field(default=None, repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        if self.kind == "azure":
            return {"api-key": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}


def resolve_endpoint(base_url: str | None = None, api_key: str | None = None, *,
                     environ: dict[str, str] | None = None, start_mock: bool = True) -> Endpoint:
    """Pick the endpoint: explicit arguments override ``OPENAI_*``, which override ``AZURE_OPENAI_*``.

    With nothing configured, the bundled mock server is started on a free loopback port (once per process) and a
    one-line notice says so.
    """
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
        return Endpoint(bundled_mock_url(), "mock", "mock")
    if base_url is None:
        return Endpoint(OPENAI_URL, "openai", api_key)
    base_url = base_url.rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"The base URL must start with http:// or https://, got {base_url!r}.")
    kind = "openai" if base_url == OPENAI_URL else "azure" if ".openai.azure.com" in base_url else "compatible"
    return Endpoint(base_url, kind, api_key)


def _azure_v1(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/openai/v1") else endpoint + "/openai/v1"


_mock_lock = threading.Lock()
_mock_server: Any = None


def bundled_mock_url() -> str:
    """Start the bundled mock server once per process and return its API URL."""
    global _mock_server
    with _mock_lock:
        if _mock_server is None or not _mock_server.running:
            from mock_server import MockServer

            _mock_server = MockServer().start()
            print(f"agent-nb: no OPENAI_API_KEY or AZURE_OPENAI_ENDPOINT set, so using the bundled mock server at "
                  f"{_mock_server.url}", file=sys.stderr)
        return str(_mock_server.url)
