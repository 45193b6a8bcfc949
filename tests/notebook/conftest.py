from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mock_server import MockServer


@pytest.fixture
def shell(mock: MockServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """An IPython shell with agent-nb loaded, pointed at the session's mock server."""
    monkeypatch.setenv("OPENAI_BASE_URL", mock.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-notebook-test")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "agent_nb")
    ip.run_line_magic("config", "AgentMagics.model = 'o3'")
    ip.run_line_magic("config", "AgentMagics.max_retries = 3")
    yield ip
    ip.run_line_magic("unload_ext", "agent_nb")
    InteractiveShell.clear_instance()
