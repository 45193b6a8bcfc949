"""Display updates from agent-nb's loop, sent as part of the cell the kernel runs now.

A run is followed in a task on agent-nb's own loop, which inherited the context of the cell that started it; left
alone, ipykernel sends the run's display updates as messages of that old cell (or, from an empty context, of the
last message the kernel handled, which may be a widget's comm message). Front ends that listen only to the request
they are executing (nbclient, so nbconvert and nbval) drop such updates, and JupyterLab drops those of a comm
message. So the magics remember the latest cell execution, and updates are sent as part of it: every front end
applies a display update to the display wherever it is in the notebook.
"""

from __future__ import annotations

import contextvars
from typing import Any

__all__ = ["publish", "remember_cell"]

_latest: dict[str, Any] = {}


def remember_cell(*args: Any) -> None:
    """An IPython ``pre_run_cell`` hook: keep the execute request of the cell that is about to run."""
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    parent = kernel.get_parent() if kernel is not None else None
    if parent:
        _latest["parent"] = parent


def publish(update: Any, *args: Any, **kwargs: Any) -> None:
    """Call ``update(*args, **kwargs)`` (a display update) as part of the latest cell execution."""
    parent = _latest.get("parent")

    def send() -> None:
        from IPython import get_ipython

        set_parent = getattr(getattr(get_ipython(), "display_pub", None), "set_thread_parent", None)
        if parent is not None and set_parent is not None:
            set_parent(parent)  # only in this fresh context: nothing else is affected
        update(*args, **kwargs)

    contextvars.Context().run(send)
