from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from agent_nb._bundled import stop_bundled
from mock_server import GenerationOptions, MockServer, ServerConfig

#: Fast defaults for tests: short replies, no pacing, so runs finish in milliseconds unless a test asks otherwise.
FAST = GenerationOptions(tokens=40, tps=0, ttft=0, queue_delay=0, tool_time=0)


@pytest.fixture(scope="session")
def mock() -> Iterator[MockServer]:
    """One in-process mock server for the whole session (tests set faults per request, not server-wide)."""
    with MockServer(ServerConfig(options=FAST)) as server:
        yield server


@pytest.fixture
def fresh_mock() -> Iterator[MockServer]:
    """A mock server of a test's own, for server-wide faults and settings."""
    with MockServer(ServerConfig(options=FAST)) as server:
        yield server


@pytest.fixture
def client(mock: MockServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.url, api_key="test-key", _strict_response_validation=True,
                       max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(mock: MockServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock.base_url, timeout=10) as session:
        yield session


@pytest.fixture(autouse=True)
def agent_nb_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own run store directory, and no real endpoint from the environment.

    A bundled mock server the test started (by using agent-nb with nothing configured) is stopped, by its PID,
    when the test ends.
    """
    home = tmp_path_factory.mktemp("agent_nb_home")
    monkeypatch.setenv("AGENT_NB_HOME", str(home))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield home
    stop_bundled(home)
