"""Running the server in-process: on a free loopback port, in a thread, for tests and notebooks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import socket
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from .app import create_app
from .config import ServerConfig
from .faults import FaultSpec
from .keys import KeySet


class MockServer:
    """A mock Responses server running in a background thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with MockServer() as server:
            client = openai.OpenAI(base_url=server.url, api_key="mock")

    Args:
        config: server settings; defaults to in-memory storage and no faults.
        host: interface to bind; loopback unless you mean otherwise.
        port: port to bind; 0 picks a free one.
    """

    def __init__(self, config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        self.config = config or ServerConfig()
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._keys: KeySet | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no path)."""
        if self.port is None:
            raise RuntimeError("The mock server is not running; call start() first.")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL to give a client: ``http://host:port/v1``."""
        return self.base_url + "/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> MockServer:
        """Start serving; returns once the server accepts connections."""
        if self.running:
            return self
        sock = bind(self.host, self._requested_port)
        self.port = sock.getsockname()[1]
        app = create_app(self.config)
        self._keys = app.state.keys
        config = uvicorn.Config(app, log_level=self._log_level, lifespan="on", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._server.serve(sockets=[sock]))  # type: ignore[union-attr]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"mock-server-{self.port}", daemon=True)
        self._thread.start()
        if not _wait(lambda: (self._server is not None and self._server.started) or bool(failure)
                     or not self._thread.is_alive(), timeout):  # type: ignore[union-attr]
            self.stop()
            raise RuntimeError(f"The mock server did not start within {timeout:g} seconds.")
        if failure or not self._server.started:
            self.stop()
            raise RuntimeError(f"The mock server failed to start: {failure[0] if failure else 'unknown'}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def set_faults(self, spec: str | FaultSpec) -> None:
        """Set the server-wide faults (as ``PUT /mock/faults`` does)."""
        httpx.put(self.base_url + "/mock/faults", json={"faults": str(spec)}, headers=self._auth(),
                  timeout=10).raise_for_status()

    def set_rate_limits(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None) -> None:
        """Limit every API key to these budgets, each starting full (as ``PUT /mock/rate_limits`` does); ``None``
        is unlimited."""
        httpx.put(self.base_url + "/mock/rate_limits", json={"requests_per_minute": requests_per_minute,
                                                             "tokens_per_minute": tokens_per_minute},
                  headers=self._auth(), timeout=10).raise_for_status()

    def set_api_keys(self, *keys: str) -> None:
        """Accept exactly these bearer keys from now on (``re:PATTERN`` for a pattern), as a rotated token would be."""
        if self._keys is None:
            raise RuntimeError("start the server before setting its keys")
        self._keys.replace(keys)

    def clear_faults(self) -> None:
        httpx.delete(self.base_url + "/mock/faults", headers=self._auth(), timeout=10).raise_for_status()

    def _auth(self) -> dict[str, str]:
        key = self.config.api_key or next((k for k in self.config.api_keys if not k.startswith("re:")), None)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.port is not None and self.running else "stopped"
        return f"<MockServer {state}>"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 for a free port); a busy port raises :class:`PortUnavailable`."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it every
    # keep-alive response (headers, then body) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"port {port} on {host} is already in use (another mock server?). Stop it, or "
                                  "choose another port with --port (--port 0 picks a free one).") from None
        raise PortUnavailable(f"cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    return sock


class PortUnavailable(Exception):
    """The port cannot be listened on: in use, or not ours to take."""


def _wait(condition: Any, timeout: float) -> bool:
    event = threading.Event()
    step = 0.005
    waited = 0.0
    while waited < timeout:
        if condition():
            return True
        event.wait(step)
        waited += step
        step = min(step * 2, 0.05)
    return bool(condition())


@contextlib.contextmanager
def serve(config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
          **config_fields: Any) -> Iterator[str]:
    """Run a mock server for the duration of a ``with`` block and give its API base URL.

    Keyword arguments not named here are :class:`ServerConfig` fields, e.g. ``serve(api_key="k")``.
    """
    if config_fields:
        config = ServerConfig(**config_fields) if config is None else _replace(config, config_fields)
    with MockServer(config, host=host, port=port) as server:
        yield server.url


def _replace(config: ServerConfig, fields: dict[str, Any]) -> ServerConfig:
    return dataclasses.replace(config, **fields)
