"""The notebook layer: ``%%agent`` and ``%%agent_batch``, the live run and batch widgets, and recovery of runs
across kernels.

Imported only when a notebook feature is used (``%load_ext agent_nb``), so ``import agent_nb`` stays light.
"""

from __future__ import annotations

from typing import Any

from .._store import default_store
from ..batch import Batch
from ._batch_magics import BatchMagics
from ._batch_view import BatchWidget, batch_bundle
from ._card import RunCard
from ._commands import unfinished_summary
from ._handle import NotebookRun
from ._magics import AgentMagics
from ._markdown import render_markdown
from ._publish import remember_cell
from ._tables import BatchTable, RunTable
from ._widget import RunWidget

__all__ = ["AgentMagics", "BatchMagics", "BatchTable", "BatchWidget", "NotebookRun", "RunCard", "RunTable",
           "RunWidget", "load_ipython_extension", "render_markdown", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext agent_nb``: register ``%%agent`` / ``%agent`` and ``%%agent_batch``, show a :class:`Batch` as its
    live view, and say in one line if runs are unfinished."""
    ipython.register_magics(AgentMagics)
    ipython.register_magics(BatchMagics)
    ipython.display_formatter.mimebundle_formatter.for_type(Batch, batch_bundle)
    if remember_cell not in ipython.events.callbacks["pre_run_cell"]:
        ipython.events.register("pre_run_cell", remember_cell)
    summary = unfinished_summary(default_store())
    if summary is not None:
        print(summary)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext agent_nb``: remove the magics and the batch view's display hook again."""
    ipython.display_formatter.mimebundle_formatter.pop(Batch, None)
    if remember_cell in ipython.events.callbacks["pre_run_cell"]:
        ipython.events.unregister("pre_run_cell", remember_cell)
    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("agent", None)
        manager.magics[kind].pop("agent_batch", None)
    for name in ("AgentMagics", "BatchMagics"):
        manager.registry.pop(name, None)
