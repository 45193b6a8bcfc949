"""The package face: a curated __all__, typed, and no notebook imports until a notebook feature is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import agent_nb
import mock_server

from ..helpers import ROOT


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(agent_nb) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(agent_nb, name)).__name__ == "module"}
    expected = (public - modules - {"annotations", "TYPE_CHECKING"}) | {"__version__"}
    assert set(agent_nb.__all__) == expected
    assert sorted(agent_nb.__all__, key=str.lower) == sorted(agent_nb.__all__, key=str.lower)
    for name in mock_server.__all__:
        assert hasattr(mock_server, name)


def test_errors_form_one_hierarchy() -> None:
    errors = [getattr(agent_nb, name) for name in agent_nb.__all__
              if isinstance(getattr(agent_nb, name), type) and issubclass(getattr(agent_nb, name), Exception)]
    assert len(errors) >= 12
    assert all(issubclass(error, agent_nb.AgentNBError) for error in errors)
    doc = sys.modules["agent_nb._errors"].__doc__ or ""
    for error in errors:
        assert error.__name__ in doc, f"{error.__name__} is missing from the drawn hierarchy"


def test_packages_are_typed() -> None:
    assert (Path(agent_nb.__file__).parent / "py.typed").exists()
    assert (Path(mock_server.__file__).parent / "py.typed").exists()


def test_importing_agent_nb_imports_no_notebook_machinery() -> None:
    code = ("import sys, agent_nb; "
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'nest_asyncio') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
