"""How the notebooks in notebooks/ are tested: nbval runs each one top to bottom and compares the saved outputs.

Each notebook's kernel inherits the environment at the moment it starts (while its first cell is set up), so that is
when this hook gives it an empty run store of its own and unsets any real endpoint and agent-nb's default model and
instructions: every notebook then runs on the bundled mock server, as its saved outputs did. The environment is
restored right after, for the tests that follow. Values that change from run to run (ids, tokens, ports, ages) are
replaced as tests/notebooks/nbval_sanitize.cfg says.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SANITIZE = Path(__file__).parent / "tests" / "notebooks" / "nbval_sanitize.cfg"
#: Unset for the notebooks' kernels: a real endpoint, and defaults that would change the mock's (deterministic) replies.
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AGENT_NB_MODEL",
           "AGENT_NB_INSTRUCTIONS")
_homes: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "nbval_sanitize_with", "unset") is None:
        config.option.nbval_sanitize_with = str(SANITIZE)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    notebook = item.parent
    if item.path.suffix != ".ipynb" or notebook is None or getattr(notebook, "kernel", None) is not None:
        yield
        return
    home = tempfile.mkdtemp(prefix="agent_nb_home_")
    changes = {"AGENT_NB_HOME": home, **dict.fromkeys(CLEARED)}
    saved = {name: os.environ.get(name) for name in changes}
    for name, value in changes.items():
        _set(name, value)
    try:
        yield  # the notebook's kernel starts here, with this environment
    finally:
        for name, value in saved.items():
            _set(name, value)
        _homes.append(home)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the bundled mock servers the notebooks started (by their PIDs), then remove the notebooks' homes."""
    from agent_nb._bundled import stop_bundled

    while _homes:
        home = _homes.pop()
        stop_bundled(Path(home))
        shutil.rmtree(home, ignore_errors=True)


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
