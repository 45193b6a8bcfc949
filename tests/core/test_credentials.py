"""Entra ID on Azure OpenAI: a bearer token asked for on every request, refreshed after a 401, never stored."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_nb import Agent, ConfigurationError, OpenAIResponsesClient, ResponsesClient, RetryPolicy, SQLiteRunStore
from mock_server import MockServer, ServerConfig

from ..conftest import FAST

RETRY = RetryPolicy(max_retries=10, initial_delay=0.01, max_delay=0.05, stall_timeout=2.0)


class RotatingProvider:
    """A fake ``get_bearer_token_provider``: every third token it issues expires on the service right away (the
    server then accepts only the next one), as a token issued just before its rotation does."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.generation = 0
        self.calls = 0
        self.issued: list[str] = []
        server.set_api_keys(self.token)

    @property
    def token(self) -> str:
        return f"entra-token-{self.generation:04d}-secret"

    def __call__(self) -> str:
        self.calls += 1
        token = self.token
        self.issued.append(token)
        if self.calls % 3 == 0:
            self.generation += 1
            self.server.set_api_keys(self.token)  # the one just issued is no longer accepted
        return token


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(ServerConfig(options=FAST, api_keys=("bootstrap-key",))) as server:
        yield server


async def test_a_long_resumed_run_survives_three_rotations_with_no_401_and_no_token_anywhere(
        server: MockServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
        ) -> None:
    caplog.set_level(logging.DEBUG)
    provider = RotatingProvider(server)
    client = ResponsesClient(server.url, retry=RETRY, azure_ad_token_provider=provider)
    path = tmp_path / "runs.sqlite3"
    agent = Agent(client, model="o3", store=SQLiteRunStore(path))
    options = {"background": True, "metadata": {"mock_options": "tokens=300,tps=0,ttft=0,queue_delay=0",
                                                "mock_faults": "drop_after=40,drops=8"}}
    response = await agent.start("A long report", options=options).wait()
    assert response.status == "completed" and len(response.text) > 500
    assert provider.generation >= 3, f"only {provider.generation} rotations happened"
    # Each expired token met a 401, was refreshed and retried: the user saw none of them.
    assert len(provider.issued) > provider.calls - 1 and provider.calls >= 9
    await client.aclose()
    stored = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("runs.sqlite3-*"))
    shown = repr(client) + repr(client.endpoint) + caplog.text + "".join(capsys.readouterr())
    for token in set(provider.issued):
        assert token.encode() not in stored and token not in shown


async def test_an_async_provider_and_a_callable_api_key_work_the_same(server: MockServer) -> None:
    server.set_api_keys("re:async-\\d+", "callable-key")
    counter = {"n": 0}

    async def fetch() -> str:
        counter["n"] += 1
        return f"async-{counter['n']}"

    for client in (ResponsesClient(server.url, azure_ad_token_provider=fetch),
                   OpenAIResponsesClient("o3", base_url=server.url, api_key=lambda: "callable-key").client):
        agent = Agent(client, model="o3", store=False)
        for _ in range(2):
            assert (await agent.start("Hi", options={"metadata": {"mock_reply": "ok"}}).wait()).text == "ok"
        await client.aclose()
    assert counter["n"] == 2  # asked again for every request


async def test_a_provider_that_returns_no_token_is_a_clear_error(server: MockServer) -> None:
    client = ResponsesClient(server.url, azure_ad_token_provider=lambda: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigurationError, match="returned NoneType, not a token string"):
        await Agent(client, model="o3", store=False).start("Hi").wait()
    await client.aclose()


def test_a_provider_needs_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="needs an endpoint"):
        ResponsesClient(azure_ad_token_provider=lambda: "t")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com")
    client = ResponsesClient(azure_ad_token_provider=lambda: "t")
    assert (client.base_url, client.endpoint.kind) == ("https://contoso.openai.azure.com/openai/v1", "azure")
    assert client.endpoint.headers() == {}  # the token goes in per request, not in the client's headers
