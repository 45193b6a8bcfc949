"""The batch widget in a real JupyterLab: it counts up while a cell blocks the kernel, ends red with its failures
listed one line each, reads well in the light and the dark theme, and its Retry failed button finishes the batch;
and through a kernel restart, its old view says it stopped updating and the new kernel re-attaches by name.

A ``%%agent_batch`` cell of 30 prompts runs on an in-kernel mock where 30% of the responses fail (``fail_rate``) and
each run takes about two seconds, five at a time, one attempt each, so some items always fail. The next cell sleeps
for six seconds: the widget must keep counting meanwhile. Once the batch has ended the faults are cleared and Retry
failed is clicked: the batch must end with every item done, and ``%agent batches`` must list it so.

The restart notebook has nothing configured, so its batch runs on the bundled mock (its own process), which outlives
the kernel: restarted mid-batch, the new kernel's ``%load_ext`` names the batch, ``%agent_batch --name`` re-attaches,
and the batch ends with one create per item. Screenshots go to ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from ..helpers import wait_until
from .lab import (
    Lab,
    broken_link_icons,
    contrast,
    drive_with_diagnostics,
    expect_kernel_idle,
    open_notebook,
    prompt_of,
    restart_kernel,
    run_cell,
    shot,
    theme_colour,
    use_theme,
    wait_cell_done,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

NOTEBOOK = "agent_batch.ipynb"
ITEMS = 30
CELLS = [
    '%load_ext agent_nb\n%agent mock start --options "tokens=60,tps=30,ttft=0"\n'
    "%agent mock faults --faults fail_rate=0.3",
    "%%agent_batch -o batch --name lab-batch --concurrency 5 --max-attempts 1\n"
    + "\n".join(f"Summarise filing {i} in one paragraph." for i in range(ITEMS)),
    "import time; time.sleep(6)",
    "%agent mock faults",  # no faults: the retried items complete
    "%agent batches",
    "print('STATUSES', sorted({r.status for r in batch.results()}), 'ITEMS', len(batch.results()))",
]


RESTART_NOTEBOOK = "agent_batch_restart.ipynb"
RESTART_ITEMS = 24
RESTART_CELLS = [
    "%load_ext agent_nb",
    "%%agent_batch --name overnight --concurrency 4 --metadata mock_options=tokens=150,tps=50,ttft=0\n"
    + "\n".join(f"Extract the parties of contract {i}." for i in range(RESTART_ITEMS)),
    "%load_ext agent_nb",  # in the new kernel, after the restart
    "%agent_batch --name overnight -o batch",
    "import httpx\nfrom agent_nb._bundled import find_bundled\nbatch.wait(120)\n"
    "health = httpx.get(f'{find_bundled().base_url}/mock/health', timeout=10).json()\n"
    "print('CREATES', health['creates'], 'ATTEMPTS', sum(r.attempts for r in batch.results()),\n"
    "      'DONE', batch.progress.done, batch.progress.state)",
]


def _counted(widget: Locator, items: int = ITEMS) -> int:
    """How many items the widget's counter says have ended (``12/30 · 40%``)."""
    shown = re.match(r"\s*(\d+)/(\d+)", widget.locator(".widget-hbox .widget-html").nth(1).inner_text())
    assert shown and int(shown.group(2)) == items, widget.inner_text()
    return int(shown.group(1))


def _check_reads_well(page: Page, widget: Locator, theme: str) -> None:
    """The state label, the failed count and the error lines keep a readable contrast on the notebook's background."""
    background = page.evaluate("() => getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor")
    error = theme_colour(page, "--jp-error-color1")
    for what, element in (("the state", widget.locator(".widget-html").nth(2).locator("b").first),
                          ("the failed count", widget.locator("span", has_text=re.compile(r"^\d+ failed$")).first),
                          ("an error line", widget.locator(".agent-nb-batch-error").first)):
        colour = element.evaluate("el => getComputedStyle(el).color")
        ratio = contrast(page, colour, background)
        print(f"{theme}: {what} is {colour}, contrast {ratio:.1f}:1")
        assert ratio >= 3.0, f"{what} is hard to read in {theme}: contrast {ratio:.1f}:1"
        if what != "the state":
            assert colour == error, f"{what} should be the theme's error colour in {theme}"
    bar = widget.locator(".progress-bar").first
    assert bar.evaluate("el => getComputedStyle(el).backgroundColor") == error, "a batch with failures ends red"


def test_the_batch_widget_counts_while_the_kernel_sleeps_and_retry_failed_finishes_it(lab: Lab, page: Page) -> None:
    drive_with_diagnostics(lab, page, _drive_the_batch, "batch-failure")


def _drive_the_batch(lab: Lab, page: Page) -> None:
    lab.add_notebook(NOTEBOOK, CELLS)
    cells = open_notebook(lab, page, NOTEBOOK, len(CELLS))
    run_cell(page, cells, 0)
    wait_cell_done(cells.nth(0), 30)
    expect(cells.nth(0).locator(".jp-OutputArea-output")).to_contain_text("faults: fail_rate=0.3", timeout=5_000)

    # The batch starts and returns at once; the sleep cell then blocks the kernel while the widget counts on.
    run_cell(page, cells, 1)
    widget = cells.nth(1).locator(".agent-nb-batch")
    expect(widget).to_be_visible(timeout=15_000)
    expect(widget.locator(".widget-html b").first).to_have_text("lab-batch")
    wait_cell_done(cells.nth(1), 15)
    run_cell(page, cells, 2)
    expect(cells.nth(2).locator(".jp-InputPrompt").first).to_have_text(re.compile(r"\[\*\]"), timeout=5_000)
    summary = widget.locator(".widget-html").nth(2)
    expect(summary).to_contain_text("running", timeout=5_000)
    expect(summary).to_contain_text("items/s")
    expect(summary).to_contain_text("ETA")
    state = summary.locator("b").first
    expect(state).to_have_css("color", theme_colour(page, "--jp-brand-color1"))
    cancel = widget.get_by_role("button", name="Cancel all")
    retry = widget.get_by_role("button", name="Retry failed")
    expect(cancel).to_be_enabled()
    before = _counted(widget)
    wait_until(lambda: _counted(widget) >= before + 5, 20, "the widget to count five more items")
    assert prompt_of(cells.nth(2)) == "[*]:", "the widget should count while the sleep cell still runs"
    shot(page, "batch-1-running")

    # The batch ends with failures: red bar, the failed count and the latest errors in the error colour, one line
    # each; Retry failed is offered, Cancel all is not.
    expect(state).to_have_text("completed", timeout=60_000)
    assert _counted(widget) == ITEMS
    failed = int(re.search(r"(\d+) failed", summary.inner_text()).group(1))  # type: ignore[union-attr]
    assert 0 < failed < ITEMS
    errors = widget.locator(".agent-nb-batch-error")
    assert 1 <= errors.count() <= failed
    for line in errors.all_inner_texts():
        assert "\n" not in line.strip() and "failed" in line, line
    expect(retry).to_be_enabled()
    expect(cancel).to_be_disabled()
    wait_cell_done(cells.nth(2), 30)
    widget.scroll_into_view_if_needed()
    _check_reads_well(page, widget, "JupyterLab Light")
    shot(page, "batch-2-failures-light")
    use_theme(page, "JupyterLab Dark")
    _check_reads_well(page, widget, "JupyterLab Dark")
    shot(page, "batch-3-failures-dark")

    # Faults off, then Retry failed: only the failed items go again, and the batch ends green with every item done.
    run_cell(page, cells, 3)
    wait_cell_done(cells.nth(3), 15)
    retry.click()
    expect(widget).to_contain_text(f"Retrying {failed} failed item", timeout=10_000)
    expect(summary).to_contain_text(f"completed · {ITEMS} done · 0 failed", timeout=60_000)
    expect(widget).to_contain_text(f"Retried {failed} failed item", timeout=10_000)
    expect(widget).to_contain_text("all done.")
    expect(errors).to_have_count(0)
    expect(retry).to_be_disabled()
    bar = widget.locator(".progress-bar").first
    wait_until(lambda: bar.evaluate("el => getComputedStyle(el).backgroundColor")
               == theme_colour(page, "--jp-success-color1"), 10, "the bar to turn green")
    shot(page, "batch-4-retried-dark")

    run_cell(page, cells, 4)
    wait_cell_done(cells.nth(4), 15)
    listing = cells.nth(4).locator(".jp-OutputArea-output").first
    expect(listing).to_contain_text("lab-batch")
    expect(listing).to_contain_text(str(ITEMS))
    run_cell(page, cells, 5)
    wait_cell_done(cells.nth(5), 15)
    expect(cells.nth(5).locator(".jp-OutputArea-output").first).to_contain_text(
        f"STATUSES ['completed'] ITEMS {ITEMS}")
    use_theme(page, "JupyterLab Light")
    widget.scroll_into_view_if_needed()
    shot(page, "batch-5-retried-light")


def test_after_a_kernel_restart_the_batch_view_says_so_and_the_batch_is_reattached_by_name(lab: Lab,
                                                                                         page: Page) -> None:
    drive_with_diagnostics(lab, page, _drive_the_restart, "batch-restart-failure")


def _drive_the_restart(lab: Lab, page: Page) -> None:
    lab.add_notebook(RESTART_NOTEBOOK, RESTART_CELLS)
    cells = open_notebook(lab, page, RESTART_NOTEBOOK, len(RESTART_CELLS))
    run_cell(page, cells, 0)
    wait_cell_done(cells.nth(0), 30)
    run_cell(page, cells, 1)
    first = cells.nth(1)
    widget = first.locator(".agent-nb-batch")
    expect(widget).to_be_visible(timeout=30_000)
    wait_until(lambda: _counted(widget, RESTART_ITEMS) >= 4, 60, "four items done before the restart")
    note = widget.locator(".agent-nb-stale-note")
    expect(note).to_be_hidden()  # while the kernel is alive

    restart_kernel(page)
    expect(widget).to_have_class(re.compile(r"\bagent-nb-stale\b"), timeout=30_000)
    expect_kernel_idle(page)
    expect(note).to_be_visible()
    expect(note).to_contain_text("This view stopped updating")
    expect(note).to_contain_text("%agent_batch --name overnight")
    for gone in (widget.get_by_role("button", name="Cancel all"), widget.get_by_role("button", name="Retry failed")):
        expect(gone).to_be_hidden()
    icons = broken_link_icons(first)
    assert icons == 0, f"{icons} broken-link icons are showing"
    widget.scroll_into_view_if_needed()
    shot(page, "batch-restart-1-stale")

    run_cell(page, cells, 2)
    wait_cell_done(cells.nth(2), 30)
    expect(cells.nth(2)).to_contain_text("1 batch has unfinished items: overnight (")
    expect(cells.nth(2)).to_contain_text("re-attach with %agent_batch --name overnight")
    run_cell(page, cells, 3)
    again = cells.nth(3).locator(".agent-nb-batch")
    expect(again).to_be_visible(timeout=30_000)
    expect(again).to_contain_text("Re-attached to the stored batch overnight")
    run_cell(page, cells, 4)
    wait_cell_done(cells.nth(4), 150)
    report = cells.nth(4).locator(".jp-OutputArea-output").first.inner_text()
    assert re.search(rf"CREATES (\d+) ATTEMPTS \1 DONE {RESTART_ITEMS} completed", report), report
    assert f"CREATES {RESTART_ITEMS} " in report, "an item was created twice across the restart"
    expect(again.locator(".widget-html").nth(2)).to_contain_text(f"completed · {RESTART_ITEMS} done", timeout=10_000)
    expect(widget).to_have_class(re.compile(r"\bagent-nb-stale\b"))  # the old kernel's view still says so
    again.scroll_into_view_if_needed()
    shot(page, "batch-restart-2-reattached")
