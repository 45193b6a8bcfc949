"""Endpoint resolution: explicit arguments, then OPENAI_*, then AZURE_OPENAI_*, then the bundled mock server."""

from __future__ import annotations

import pytest

from agent_nb import ConfigurationError, ResponsesClient
from agent_nb._config import OPENAI_URL, Endpoint, endpoint_for, resolve_endpoint


def test_explicit_arguments_override_the_environment() -> None:
    env = {"OPENAI_BASE_URL": "http://env.example/v1", "OPENAI_API_KEY": "sk-env"}
    endpoint = resolve_endpoint("http://arg.example/v1/", "sk-arg", environ=env)
    assert (endpoint.base_url, endpoint.api_key, endpoint.kind) == ("http://arg.example/v1", "sk-arg", "compatible")
    assert resolve_endpoint("http://arg.example/v1", environ=env).api_key == "sk-env"
    assert resolve_endpoint(api_key="sk-arg", environ=env).base_url == "http://env.example/v1"


def test_openai_key_alone_means_the_openai_service() -> None:
    endpoint = resolve_endpoint(environ={"OPENAI_API_KEY": "sk-x"})
    assert endpoint == Endpoint(OPENAI_URL, "openai") and endpoint.headers() == {"Authorization": "Bearer sk-x"}


def test_azure_v1_endpoint_uses_its_key_header() -> None:
    endpoint = resolve_endpoint(environ={"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
                                         "AZURE_OPENAI_API_KEY": "az-key"})
    assert endpoint.base_url == "https://res.openai.azure.com/openai/v1" and endpoint.kind == "azure"
    assert endpoint.headers() == {"api-key": "az-key"}
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_API_KEY"):
        resolve_endpoint(environ={"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com"})


def test_the_key_never_shows_in_reprs() -> None:
    endpoint = resolve_endpoint("http://h/v1", "sk-very-secret", environ={})
    assert "sk-very-secret" not in repr(endpoint) + repr(ResponsesClient(endpoint=endpoint))


def test_bad_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="must start with http"):
        resolve_endpoint("ftp://x", "k", environ={})
    with pytest.raises(ConfigurationError, match="No endpoint configured"):
        resolve_endpoint(environ={}, start_mock=False)


def test_nothing_configured_starts_the_bundled_mock_once_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    first = resolve_endpoint(environ={})
    second = resolve_endpoint(environ={})
    assert first.kind == "mock" and first.base_url == second.base_url
    assert first.base_url.startswith("http://127.0.0.1:")
    notices = capsys.readouterr().err.count("using the bundled mock server")
    assert notices <= 1  # once per process (it may already have been said by an earlier test)


def test_a_stored_run_is_resumed_at_its_endpoint_with_only_that_endpoints_key() -> None:
    env = {"OPENAI_BASE_URL": "http://configured.example/v1", "OPENAI_API_KEY": "sk-configured"}
    same = endpoint_for("http://configured.example/v1/", environ=env)
    assert (same.base_url, same.api_key) == ("http://configured.example/v1", "sk-configured")
    elsewhere = endpoint_for("http://elsewhere.example/v1", environ=env)
    assert elsewhere.base_url == "http://elsewhere.example/v1" and elsewhere.api_key is None  # never another's key
    azure = endpoint_for("https://res.openai.azure.com/openai/v1", environ={
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com", "AZURE_OPENAI_API_KEY": "az"})
    assert (azure.kind, azure.headers()) == ("azure", {"api-key": "az"})
    assert endpoint_for(OPENAI_URL, environ={"OPENAI_API_KEY": "sk-o"}).api_key == "sk-o"
