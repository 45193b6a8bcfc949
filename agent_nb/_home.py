"""Where agent-nb keeps its files on this machine: ``$AGENT_NB_HOME``, ``~/.agent_nb`` by default, private to the user.

The run store, the bundled mock server's database and its state file live there; prompts and outputs can be
sensitive, so every directory agent-nb creates on the way there is the user's alone (0o700), whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["agent_nb_home", "make_private_dirs"]


def agent_nb_home() -> Path:
    """``$AGENT_NB_HOME``, else ``~/.agent_nb``; read from the environment on every call."""
    return Path(os.environ.get("AGENT_NB_HOME") or "~/.agent_nb").expanduser()


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents, each 0o700 (directories that exist are left as they are)."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it meanwhile: not ours to change
        os.chmod(path, 0o700)  # mkdir's mode is narrowed by the umask, never widened: make it exact
