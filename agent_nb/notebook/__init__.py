"""The notebook layer: ``%%agent``, the live run widget, and recovery of runs across kernels.

Imported only when a notebook feature is used (``%load_ext agent_nb``), so ``import agent_nb`` stays light.
"""

from __future__ import annotations

from typing import Any

from ._handle import NotebookRun
from ._magics import AgentMagics, RunTable
from ._markdown import render_markdown
from ._widget import RunWidget

__all__ = ["AgentMagics", "NotebookRun", "RunTable", "RunWidget", "load_ipython_extension", "render_markdown",
           "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext agent_nb``: register ``%%agent`` / ``%agent``."""
    ipython.register_magics(AgentMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext agent_nb``: remove the magics again."""
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("agent", None)
    manager.registry.pop("AgentMagics", None)
