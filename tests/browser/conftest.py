"""The browser tests' fixtures: Debian's Chromium, a JupyterLab of the test's own, and a page in a fresh profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from ..helpers import free_port, wait_until
from .lab import CHROMIUM, CHROMIUM_ARGS, Lab, stop_lab, write_settings


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; without it the test is skipped, except on CI (CI=true), where it fails."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = (f"{CHROMIUM} is missing: the JupyterLab browser test needs Debian's chromium "
               "(apt-get install chromium).")
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(message + " CI must install it.")
    pytest.skip(message)


@pytest.fixture
def lab(chromium: Path, tmp_path: Path, agent_nb_home: Path) -> Iterator[Lab]:
    root = tmp_path / "root"
    root.mkdir()
    data = tmp_path / "jupyter-data"  # a python3 kernelspec running this venv's interpreter
    (data / "kernels" / "python3").mkdir(parents=True)
    (data / "kernels" / "python3" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    settings = tmp_path / "lab-settings"
    write_settings(settings)

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OPENAI_", "AZURE_OPENAI_", "AGENT_NB_", "JUPYTER"))}
    env.update(AGENT_NB_HOME=str(agent_nb_home), JUPYTER_DATA_DIR=str(data),
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               PYTHONUNBUFFERED="1")
    port, token = free_port(), "agent-nb-browser-test"
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             "--ServerApp.allow_root=True",
             f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
             "jupyterlab.NeverCheckForUpdate"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root, env=env)
    server = Lab(f"http://127.0.0.1:{port}", token, proc, log, root)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return server.api("GET", "status").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 60, "JupyterLab to answer")
        yield server
    finally:
        stop_lab(server)


@pytest.fixture
def page(chromium: Path, tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
