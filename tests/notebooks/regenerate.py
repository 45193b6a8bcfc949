"""Run the notebooks in notebooks/ top to bottom and save their outputs, as ``make notebooks`` does.

Each notebook runs as the test run executes it (see the root conftest.py): in a kernel of this environment, on an
empty ``$AGENT_NB_HOME`` of its own, with no real endpoint configured, so against the bundled mock server, which is
stopped (by its PID) once the notebook is done. Usage: ``python tests/notebooks/regenerate.py [NOTEBOOK ...]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AGENT_NB_MODEL",
           "AGENT_NB_INSTRUCTIONS")


def regenerate(notebook: Path) -> int:
    home = Path(tempfile.mkdtemp(prefix="agent_nb_home_"))
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env["AGENT_NB_HOME"] = str(home)
    try:
        import nbformat

        content = nbformat.read(notebook, as_version=4)
        if content.metadata.pop("widgets", None) is not None:  # widget state: the saved views stand for the widgets
            nbformat.write(content, notebook)
        print(f"executing {notebook.relative_to(ROOT)}", flush=True)
        return subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                               "--inplace", "--ExecutePreprocessor.store_widget_state=False", str(notebook)],
                              env=env, cwd=ROOT).returncode
    finally:
        from agent_nb._bundled import stop_bundled

        stop_bundled(home)
        shutil.rmtree(home, ignore_errors=True)


def main(names: list[str]) -> int:
    notebooks = [Path(name).resolve() for name in names] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for notebook in notebooks:
        code = regenerate(notebook)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
