"""Fixtures for the core tests: a real ``redis-server`` for the session, and a run store of each kind."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from agent_nb._store import RedisRunStore, RunStore, SQLiteRunStore

from ..helpers import free_port, wait_until


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free port, without persistence; yields its URL and stops it by PID."""
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not installed, and the Redis run store tests need it (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it before running the tests.", pytrace=False)
        pytest.skip(message)
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    log_path = workdir / "redis-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {proc.returncode}: {log_path.read_text()}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, 20, "redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Backend:
    """Where one test's store lives, so that other stores (and other processes) can open the same one."""

    kind: str
    location: str  # the SQLite file, or the Redis URL
    prefix: str = "agent_nb"

    def open(self) -> RunStore:
        if self.kind == "sqlite":
            return SQLiteRunStore(self.location)
        return RedisRunStore(self.location, prefix=self.prefix)

    @property
    def args(self) -> list[str]:
        """The command-line arguments that :data:`tests.core.test_store.WORKER` reads."""
        return [self.kind, self.location, self.prefix]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each kind of store: a SQLite file not created yet, or a key prefix of this test's own on the Redis server."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "home" / "runs.sqlite3"))
    url: str = request.getfixturevalue("redis_server")
    return Backend("redis", url, prefix=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(backend: Backend) -> Iterator[RunStore]:
    with backend.open() as opened:
        yield opened
