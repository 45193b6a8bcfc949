"""Small helpers shared by the tests: waiting on conditions, running the server as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 15.0) -> int:
    """Send ``sig`` to a process this test started, wait ``grace`` seconds, then kill it; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def run_worker(module: str, *args: str, kill_after: int | None = None, timeout: float = 60.0
               ) -> tuple[list[str], int]:
    """Run ``python -m module args`` and collect the lines it prints; with ``kill_after``, SIGKILL it once it has
    printed that many. Returns the lines and its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if kill_after is not None and len(lines) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    return lines, int(proc.returncode)


class ServerProcess:
    """``python -m mock_server`` in a subprocess, stopped (by its PID) when the test ends."""

    def __init__(self, *args: str, port: int | None = None,
                 wrap: Callable[[list[str]], list[str]] | None = None) -> None:
        self.port = port or free_port()
        self.args = ["--port", str(self.port), *args]
        self.proc: subprocess.Popen[str] | None = None
        self.banner = ""
        self._wrap = wrap or (lambda argv: argv)  # e.g. run it inside a small disk's mount namespace

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self._wrap([sys.executable, "-m", "mock_server", *self.args]),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()
        if "Mock Responses server on" not in self.banner:
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"server did not start: {self.banner!r} {err}")

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/mock/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(healthy, timeout, "the server to answer")
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def kill(self) -> None:
        """``kill -9``: no chance to flush or clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        return stop_process(self.proc, signal.SIGINT) if self.proc is not None else None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if stream is not None:
                stream.close()
