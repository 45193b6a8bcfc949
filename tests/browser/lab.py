"""JupyterLab in a real Chromium for the browser tests: starting the lab on a free loopback port, opening a notebook,
running its cells from the toolbar, switching themes, reading colours, and keeping screenshots in ``tests/artifacts``
(gitignored). The fixtures that start them are in ``conftest.py``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
from playwright.sync_api import Locator, Page, expect

from ..helpers import ROOT, stop_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"


@dataclass
class Lab:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    root: Path

    def add_notebook(self, name: str, sources: list[str]) -> None:
        """Write a notebook of code cells ``sources`` into JupyterLab's root, on the python3 kernel."""
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                           "language": "python"}
        nbformat.write(notebook, self.root / name)

    def api(self, method: str, path: str) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/{path}", headers={"Authorization": f"token {self.token}"},
                             timeout=10)


def write_settings(settings: Path) -> None:
    """User settings for a quiet, predictable JupyterLab: no news or update toasts, every cell rendered."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                              "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, content in files.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def stop_lab(lab: Lab) -> None:
    """Shut the kernels down through the API, then stop JupyterLab by its PID (SIGTERM, SIGKILL if it hangs)."""
    if lab.proc.poll() is None:
        try:
            for kernel in lab.api("GET", "kernels").json():
                lab.api("DELETE", f"kernels/{kernel['id']}")
        except (httpx.HTTPError, ValueError):
            pass
        stop_process(lab.proc, signal.SIGTERM, grace=20)


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"jupyterlab-{name}.png"
    page.screenshot(path=str(path))
    return path


def theme_colour(page: Page, variable: str) -> str:
    """The computed colour of a JupyterLab theme variable in the current theme, as the browser reports colours."""
    return str(page.evaluate("""variable => {
        const probe = document.createElement('span');
        probe.style.color = `var(${variable})`;
        document.body.appendChild(probe);
        const colour = getComputedStyle(probe).color;
        probe.remove();
        return colour;
    }""", variable))


def prompt_of(cell: Locator) -> str:
    return cell.locator(".jp-InputPrompt").first.inner_text().strip()


def open_notebook(lab: Lab, page: Page, name: str, cell_count: int) -> Locator:
    """Open a notebook and wait until its cells are drawn and its kernel is connected and idle."""
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}&reset")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    expect(cells).to_have_count(cell_count, timeout=45_000)
    # The toolbar's execution indicator says "idle" for a moment before there is a kernel at all, and a cell run
    # then is silently dropped; the status bar names the kernel.
    expect_kernel_idle(page)
    return cells


def expect_kernel_idle(page: Page) -> None:
    kernel_idle = page.locator(".jp-StatusBar-TextItem").filter(has_text="Python 3 (ipykernel) | Idle")
    expect(kernel_idle.first).to_be_visible(timeout=45_000)

def run_cell(page: Page, cells: Locator, index: int) -> None:
    """Make cell ``index`` the active cell, then press the notebook toolbar's "Run this cell and advance" button."""
    cell = cells.nth(index)
    cell.locator(".jp-InputPrompt").first.click()
    expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"), timeout=5_000)
    page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']").click()
    expect(cell.locator(".jp-InputPrompt").first).not_to_have_text(re.compile(r"\[ \]"), timeout=5_000)


def wait_cell_done(cell: Locator, timeout: float) -> None:
    expect(cell.locator(".jp-InputPrompt").first).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout * 1000)


def drive_with_diagnostics(lab: Lab, page: Page, drive: Callable[[Lab, Page], None], name: str) -> None:
    """Run ``drive``; if it fails, keep a screenshot and show the end of JupyterLab's log."""
    try:
        drive(lab, page)
    except BaseException:
        shot(page, name)
        print(f"JupyterLab log:\n{lab.log.read_text()[-5000:]}")
        raise


def contrast(page: Page, foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two CSS colours as the browser computes them."""
    return float(page.evaluate("""([fg, bg]) => {
        const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = c => {
            const linear = v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            const [r, g, b] = rgb(c).map(linear);
            return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05);
    }""", [foreground, background]))


def use_theme(page: Page, theme: str) -> None:
    """Settings → Theme → ``theme``, then wait until the page has switched."""
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item", has_text="Theme").first.hover()
    page.locator(".lm-Menu-item", has_text=theme).first.click()
    light = "true" if "Light" in theme else "false"
    page.wait_for_function("light => document.body.dataset.jpThemeLight === light", arg=light, timeout=15_000)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=15_000)  # the switch's splash is gone


def restart_kernel(page: Page) -> None:
    """The notebook toolbar's Restart button, and the dialog's Restart."""
    page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:restart-kernel']").click()
    page.locator(".jp-Dialog .jp-mod-accept").first.click()


def broken_link_icons(cell: Locator) -> int:
    """How many of ipywidgets' broken-link icons (a view whose kernel is gone) show in ``cell``."""
    return int(cell.locator(".jupyter-widgets-disconnected").evaluate_all(
        "els => els.filter(e => getComputedStyle(e, '::before').display !== 'none').length"))
