"""The bundled mock server as a service of this machine: one process, shared by every kernel, that outlives them.

With no endpoint configured, agent-nb uses the bundled mock Responses server. Like the real service it runs outside
the kernel: its own process (``python -m mock_server``), persisting responses to ``$AGENT_NB_HOME/mock-server
.sqlite3``, described by ``$AGENT_NB_HOME/mock-server.json`` (URL and PID) so that every kernel and process on the
machine finds and shares it. A kernel restart is then a client restart: the runs go on, and a new kernel resumes
them. It prefers the port it had last time, so that the endpoint recorded with a run stays valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._errors import ConfigurationError
from ._home import agent_nb_home, make_private_dirs

__all__ = ["BundledServer", "ensure_bundled", "find_bundled", "stop_bundled"]

_START_TIMEOUT = 30.0
#: Pacing of the bundled server: replies stream for a few seconds, so a run visibly streams in a notebook.
_PACE = ("--tokens", "240", "--tps", "60", "--ttft", "0.3")


@dataclass(frozen=True)
class BundledServer:
    """A running bundled mock server: where it listens, its process, its database."""

    url: str
    pid: int
    db: str
    started_at: float

    @property
    def base_url(self) -> str:
        return self.url.removesuffix("/v1")


def _paths(home: Path | None = None) -> tuple[Path, Path, Path, Path]:
    home = (home or agent_nb_home()).absolute()
    return home / "mock-server.json", home / "mock-server.sqlite3", home / "mock-server.log", home / "mock-server.lock"


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # started by this process and exited: reap it, it is gone
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process now has that PID; the health check below tells
    return True


def find_bundled(home: Path | None = None) -> BundledServer | None:
    """The bundled server of ``home`` (default ``$AGENT_NB_HOME``) if it is running and answers, else None."""
    state_file, db, _, _ = _paths(home)
    state = _read_state(state_file)
    if state is None:
        return None
    try:
        server = BundledServer(str(state["url"]), int(state["pid"]), str(state["db"]), float(state["started_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not _alive(server.pid):
        return None
    try:
        health = httpx.get(f"{server.base_url}/mock/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    # The port may have been taken by another server since: it must be ours, with our database.
    if not isinstance(health, dict) or (health.get("persistence") or {}).get("db") != str(db):
        return None
    return server


def ensure_bundled() -> BundledServer:
    """The bundled server, started (in its own process) if it is not running. Safe to call from many processes."""
    server = find_bundled()
    if server is not None:
        return server
    with _start_lock():
        server = find_bundled()  # another process may have started it while we waited for the lock
        if server is not None:
            return server
        state_file, db, log, _ = _paths()
        last = state_file.with_name("mock-server.last-url")  # the port it had, to take again if it is free
        try:
            port = _port_of(last.read_text().strip())
        except OSError:
            port = 0
        try:
            server = _spawn(port, state_file, db, log)
        except _PortTaken:
            server = _spawn(0, state_file, db, log)
        with contextlib.suppress(OSError):
            _write_private(last, server.url)
        return server


def stop_bundled(home: Path | None = None, timeout: float = 10.0) -> BundledServer | None:
    """Stop the bundled server (SIGTERM by its PID, SIGKILL if it lingers); returns it, or None if none ran."""
    server = find_bundled(home)
    if server is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
    state_file = _paths(home)[0]
    state = _read_state(state_file)
    if state is not None and state.get("pid") == server.pid:
        with contextlib.suppress(OSError):
            state_file.unlink()
    return server


class _PortTaken(Exception):
    pass


def _spawn(port: int, state_file: Path, db: Path, log: Path) -> BundledServer:
    _write_private(db, None)  # prompts and outputs: the database (and its -wal, -shm) is the user's alone
    command = [sys.executable, "-m", "mock_server", "--host", "127.0.0.1", "--port", str(port), "--db", str(db),
               "--state-file", str(state_file), *_PACE]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        out.write(f"\n-- {time.strftime('%Y-%m-%d %H:%M:%S')} starting the bundled mock server\n".encode())
        out.flush()
        # Its own session, so that it outlives the kernel that started it (and is not killed with the kernel's
        # process group on a restart).
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            last = _last_line(log)
            if code == 2 and "already in use" in last:
                raise _PortTaken(last)
            raise ConfigurationError(f"The bundled mock server did not start: {last or f'exit status {code}'} "
                                     f"(its log is {log}).")
        state = _read_state(state_file)
        if state is not None and state.get("pid") == proc.pid:
            server = find_bundled()
            if server is not None and server.pid == proc.pid:
                return server
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(10)
    raise ConfigurationError(f"The bundled mock server did not start within {_START_TIMEOUT:g} seconds (its log "
                             f"is {log}).")


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    """Only one process on the machine starts the bundled server at a time."""
    lock = _paths()[3]
    make_private_dirs(lock.parent)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: two kernels starting at the same instant may start two servers
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_private(path: Path, text: str | None) -> None:
    """Create ``path`` readable by its owner only; write ``text`` into it (None leaves its content alone)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if text is not None else 0), 0o600)
    with os.fdopen(fd, "w") as file:
        if text is not None:
            file.write(text)


def _port_of(url: str) -> int:
    try:
        port = httpx.URL(url).port
    except (httpx.InvalidURL, TypeError):
        return 0
    return port or 0


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].removeprefix("mock_server: ") if lines else ""
