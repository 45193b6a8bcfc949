"""The run widget in a real JupyterLab, driven by a real Chromium through Playwright.

The test starts JupyterLab on a free loopback port with a notebook it prepared, opens it in Debian's Chromium
(``/usr/bin/chromium``; Playwright downloads no browser), and runs the cells one by one. The ``%%agent`` cell's
run meets a dropped stream and then 503s, so the widget goes "in progress" → "reconnecting…" → "connection lost"
(``max_retries = 2``) while a later cell blocks the kernel in ``time.sleep``; the test then clicks Resume and
checks the widget ends "completed" with exactly the mock server's text.

A second notebook, with nothing configured (so on the bundled mock server, in its own process), starts a long run,
switches JupyterLab to the dark theme and back, restarts the kernel mid-run, and checks that the old view says it
stopped updating (no spinner, no Cancel, no broken-link icons), that the new kernel's ``%load_ext`` says one run is
unfinished, that ``%agent resume --all`` ends with exactly the server's text, and that the saved notebook, reopened,
shows the run as last seen with ``%agent resume RUN_ID``. Colours are checked against the theme's variables, and
their contrast in both themes.

Screenshots of the key moments go to ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
import re
import time

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

NOTEBOOK = "agent_widget.ipynb"
SLEEP = 15  # seconds cell 3 blocks the kernel

#: The first stream drops after 60 events; the two reconnection attempts get 503s, so with max_retries = 2 the
#: client gives up ("connection lost"). The 503s are then used up, so Resume succeeds. retry_after=1 keeps the
#: widget on "reconnecting…" for over a second, long enough for a screenshot.
FAULTS = "drop_after=60,http_503=2,retry_after=1"

#: Records every status label the run's view shows (a phase can be shorter than a poll interval), into
#: window.__statuses: the live widget's while it is there, then the saved view's that replaces it when the run ends.
#: It watches the whole page, because the view is re-rendered when the run's output is updated.
STATUS_LOG = """() => {
  window.__statuses = [];
  const read = () => {
    const el = document.querySelector('.agent-nb-run .widget-hbox .widget-html')
      || [...document.querySelectorAll('.agent-nb-saved')].find(e => e.offsetParent !== null);
    if (!el) return;
    const label = el.innerText.replace(/^[◐◓◑◒]\\s*/, '').split('·')[0].trim();
    const log = window.__statuses;
    if (label && log[log.length - 1] !== label) log.push(label);
  };
  new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
  read();
}"""

CELLS = [
    "%load_ext agent_nb\n%config AgentMagics.max_retries = 2\n%config AgentMagics.stall_timeout = 5\n"
    '%agent mock start --options "tokens=400,tps=40,ttft=0"',  # last, so its answer is the cell's output
    f"%%agent -o run --name lab --metadata mock_faults={FAULTS}\nWrite a market analysis of grid storage.",
    f"import time; time.sleep({SLEEP})",
    'print("CHARS", len(run.text), "STATUS", run.status)',
    # Run only once the widget shows "completed": the service's stored text, compared in the kernel, and rendered
    # with the widget's own renderer so the browser can compare what it shows.
    "import httpx\nfrom IPython.display import HTML, display\nfrom agent_nb.notebook import render_markdown\n"
    "mock = get_ipython().magics_manager.registry['AgentMagics'].mock\n"
    "stored = httpx.get(f'{mock.url}/responses/{run.response_id}', timeout=10).json()\n"
    "expected = stored['output'][0]['content'][0]['text']\n"
    "print('SERVER', stored['status'], len(expected), 'RUN', run.status, len(run.text),\n"
    "      'MATCH', run.text == expected)\n"
    "display(HTML('<div class=\"expected-text\">' + render_markdown(expected) + '</div>'))",
]


RESTART_NOTEBOOK = "agent_restart.ipynb"
#: Nothing configured, so the bundled mock server (its own process, under the test's AGENT_NB_HOME) serves the run,
#: and it outlives the kernel restart. The run takes about 30 s: it is still going after the restart.
RESTART_CELLS = [
    "%load_ext agent_nb",
    "%%agent -o run --name restart --metadata mock_options=tokens=1800,tps=60,ttft=0\n"
    "Write a long report on grid storage.",
    "%load_ext agent_nb",  # in the new kernel, after the restart
    "%agent resume --all",
    "import httpx\nfrom agent_nb._bundled import find_bundled\n"
    "handle = get_ipython().magics_manager.registry['AgentMagics'].runs[-1]\nhandle.wait(90)\n"
    "stored = httpx.get(f'{find_bundled().url}/responses/{handle.response_id}', timeout=10).json()\n"
    "expected = stored['output'][0]['content'][0]['text']\n"
    "print('SERVER', stored['status'], len(expected), 'RUN', handle.status, len(handle.text),\n"
    "      'MATCH', handle.text == expected)",
]


AGENT_NOTEBOOK = "agent_tools.ipynb"
#: A deep-research run on an in-kernel mock whose searches take 0.8 s each, watched while the kernel sleeps; then a
#: call that waits for approval, approved with the widget's button.
AGENT_CELLS = [
    '%load_ext agent_nb\n%agent mock start --options "tokens=120,tps=40,ttft=0,tool_time=0.8"',
    "from agent_nb import Agent, ResponsesClient, tool\n"
    "url = get_ipython().magics_manager.registry['AgentMagics'].mock.url\n"
    "sent = []\n"
    "@tool(approval_mode='always_require')\n"
    "def transfer(amount: int, to: str) -> str:\n"
    "    sent.append(amount)\n"
    "    return f'sent {amount} to {to}'\n"
    "researcher = Agent(ResponsesClient(url, 'mock'), model='o3-deep-research', store=False,\n"
    "                   tools=[{'type': 'web_search_preview'}])\n"
    "bank = Agent(ResponsesClient(url, 'mock'), model='o3', tools=[transfer], store=False)",
    "%%agent --agent researcher -o research\nCompare the Q4 launch prices of our competitors.",
    "import time; time.sleep(5)",
    "%%agent --agent bank -o pay\nPay the supplier for the Q4 samples.",
    'pay.wait(30); print("SENT", sent, pay.status)',
]


NOTIFY_NOTEBOOK = "agent_notify.ipynb"
NOTIFY_CELLS = [
    '%load_ext agent_nb\n%agent mock start --options "tokens=120,tps=40,ttft=0"',
    "%%agent --notify --name report\nWrite a short report.",
]
#: Records the notifications the page shows (the real ones: permission is granted), and makes the page look as if
#: the user were in another tab until window.__away is set to false.
NOTIFY_SPY = """() => {
  window.__notifications = [];
  const Real = window.Notification;
  window.Notification = new Proxy(Real, {construct(target, args) {
    window.__notifications.push(args[0]);
    return new target(...args);
  }});
  window.__away = true;
  Object.defineProperty(document, "visibilityState", {configurable: true,
                                                       get: () => window.__away ? "hidden" : "visible"});
  document.hasFocus = () => !window.__away;
}"""



def _wait_status(page: Page, label: str, timeout: float) -> list[str]:
    """Wait until the widget has shown ``label`` (now or since the log started); returns the labels so far."""
    page.wait_for_function("label => window.__statuses.includes(label)", arg=label, timeout=timeout * 1000)
    return list(page.evaluate("() => window.__statuses"))


def test_widget_streams_while_a_cell_blocks_then_resumes_to_the_exact_text(lab: Lab, page: Page) -> None:
    drive_with_diagnostics(lab, page, _drive_the_notebook, "failure")


def _drive_the_notebook(lab: Lab, page: Page) -> None:
    lab.add_notebook(NOTEBOOK, CELLS)
    started = time.monotonic()
    cells = open_notebook(lab, page, NOTEBOOK, len(CELLS))

    # Cell 1: the in-kernel mock server and the retry settings.
    run_cell(page, cells, 0)
    wait_cell_done(cells.nth(0), 30)
    expect(cells.nth(0).locator(".jp-OutputArea-output")).to_contain_text("Mock server running", timeout=5_000)

    # Cell 2: the run starts and its widget shows up; cell 3 then blocks the kernel.
    run_cell(page, cells, 1)
    widget = cells.nth(1).locator(".agent-nb-run")
    expect(widget).to_be_visible(timeout=15_000)
    page.evaluate(STATUS_LOG)
    status = widget.locator(".widget-hbox .widget-html").first
    body = widget.locator(".agent-nb-answer").first  # the answer, drawn in pages
    resume = widget.get_by_role("button", name="Resume")
    cancel = widget.get_by_role("button", name="Cancel")
    wait_cell_done(cells.nth(1), 15)
    run_cell(page, cells, 2)
    expect(cells.nth(2).locator(".jp-InputPrompt").first).to_have_text(re.compile(r"\[\*\]"), timeout=5_000)
    sleep_started = time.monotonic()

    # While time.sleep blocks the kernel, the widget keeps updating: text arrives and grows.
    expect(body).to_contain_text("Notes on", timeout=10_000)
    first_length = len(body.inner_text())
    wait_until(lambda: len(body.inner_text()) > first_length + 20, 10, "the widget's text to grow")
    assert prompt_of(cells.nth(2)) == "[*]:", "the widget should update while the sleep cell still runs"
    expect(status).to_contain_text("in progress")
    expect(status.locator("b").first).to_have_css("color", theme_colour(page, "--jp-brand-color1"))
    expect(cancel).to_be_enabled()
    expect(resume).to_be_disabled()
    expect(widget.get_by_role("textbox")).to_have_value(re.compile(r"^anb1\."))  # the continuation token
    expect(body.locator("h2")).to_have_count(1)  # Markdown is rendered, not shown raw
    assert not body.inner_text().startswith("#")
    shot(page, "1-streaming")

    # The stream drops: "reconnecting…", then, after two failed attempts, "connection lost" with Resume enabled.
    _wait_status(page, "reconnecting…", 15)
    shot(page, "2-reconnecting")
    expect(widget).to_contain_text("reconnecting (attempt", timeout=5_000)
    statuses = _wait_status(page, "connection lost", 15)
    assert statuses.index("in progress") < statuses.index("reconnecting…") < statuses.index("connection lost"), \
        statuses
    expect(status).to_contain_text("connection lost")
    expect(status.locator("b").first).to_have_css("color", theme_colour(page, "--jp-error-color1"))
    expect(resume).to_be_enabled(timeout=5_000)
    expect(cancel).to_be_enabled()  # the run may still be going on the service (and costing money)
    expect(widget).to_contain_text("Resume with the run's token")
    lost_length = len(body.inner_text())
    assert prompt_of(cells.nth(2)) == "[*]:", "connection lost should show while the sleep cell still runs"
    assert time.monotonic() - sleep_started < SLEEP
    shot(page, "3-connection-lost")

    # Cell 4 queues behind the sleep; Resume is clicked now, while the sleep still blocks the kernel.
    run_cell(page, cells, 3)
    resume.click()
    clicked = time.monotonic()
    statuses = _wait_status(page, "completed", SLEEP + 30)
    print(f"Resume clicked {clicked - sleep_started:.1f} s into the sleep; 'completed' shown "
          f"{time.monotonic() - clicked:.1f} s later; statuses seen: {statuses}")
    assert statuses[statuses.index("connection lost"):][-1] == "completed", statuses
    # Finished, the live view gives its place to the saved view: static, with nothing left to click.
    saved = cells.nth(1).locator(".agent-nb-saved")
    expect(saved).to_have_count(1, timeout=10_000)  # the run is shown once: its twin was cleared
    expect(saved).to_be_visible(timeout=10_000)
    expect(widget).to_have_count(0)
    expect(saved.locator("b").first).to_have_text("completed")
    expect(saved.locator("b").first).to_have_css("color", theme_colour(page, "--jp-success-color1"))
    expect(saved).to_contain_text("reconnected")  # it says how many times
    expect(saved).to_contain_text("the run has ended; it replays the stream")
    expect(cells.nth(1).get_by_role("button")).to_have_count(0)
    wait_cell_done(cells.nth(3), 10)
    cell4 = cells.nth(3).locator(".jp-OutputArea-output").first.inner_text()
    # With ipykernel 7 the click's comm message is handled only once the kernel is idle, i.e. after cell 4, which
    # then still saw "disconnected"; a kernel that handled it at once would show "completed". Either is consistent.
    assert re.fullmatch(r"CHARS [1-9]\d* STATUS (disconnected|reconnecting|in_progress|completed)", cell4.strip()), \
        cell4
    print(f"cell 4 printed: {cell4.strip()}")
    assert len(saved.inner_text()) > lost_length
    expect(saved).not_to_contain_text("reconnecting (attempt")
    shot(page, "4-completed")

    # Cell 5: the kernel compares the run's text with the server's; the browser compares what the widget shows
    # with the server's text rendered the same way.
    run_cell(page, cells, 4)
    wait_cell_done(cells.nth(4), 30)
    output = cells.nth(4).locator(".jp-OutputArea-output")
    expect(output.first).to_contain_text("MATCH True", timeout=5_000)
    report = output.first.inner_text()
    assert re.search(r"SERVER completed (\d+) RUN completed \1 MATCH True", report), report
    expected = cells.nth(4).locator(".expected-text")
    expect(expected).to_be_attached(timeout=5_000)
    assert saved.inner_text().endswith(expected.inner_text())
    assert saved.locator("h2").inner_text() == expected.locator("h2").inner_text()
    output.first.evaluate("el => el.scrollIntoView({block: 'start'})")
    shot(page, "5-checked")
    assert time.monotonic() - started < 90


def _seconds_in(saved_view: str) -> float:
    """How far into the run an unfinished run's saved view was last brought up to date."""
    shown = re.search(r"as last seen, ([\d.]+) s after it started", saved_view)
    return float(shown.group(1)) if shown else -1.0


def _check_status_reads_well(page: Page, cell: Locator, theme: str) -> None:
    label = cell.locator(".agent-nb-run .widget-hbox .widget-html b").first
    expect(label).to_have_css("color", theme_colour(page, "--jp-brand-color1"))
    # The status line is redrawn four times a second: an element replaced between finding it and reading it has no
    # computed style at all, so read again until it is one that is on the page.
    colour = wait_until(lambda: label.evaluate("el => el.isConnected ? getComputedStyle(el).color : ''"), 5,
                        "the status label's colour")
    background = page.evaluate("() => getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor")
    ratio = contrast(page, colour, background)
    print(f"{theme}: 'in progress' is {colour}, contrast {ratio:.1f}:1")
    assert ratio >= 3.0, f"'in progress' is hard to read in {theme}: contrast {ratio:.1f}:1"


def test_after_a_kernel_restart_the_old_view_says_so_and_the_run_is_reattached_exactly(lab: Lab, page: Page) -> None:
    drive_with_diagnostics(lab, page, _drive_the_restart, "restart-failure")


def _drive_the_restart(lab: Lab, page: Page) -> None:
    lab.add_notebook(RESTART_NOTEBOOK, RESTART_CELLS)
    cells = open_notebook(lab, page, RESTART_NOTEBOOK, len(RESTART_CELLS))
    run_cell(page, cells, 0)
    wait_cell_done(cells.nth(0), 30)
    run_cell(page, cells, 1)
    first = cells.nth(1)
    widget = first.locator(".agent-nb-run")
    expect(widget).to_be_visible(timeout=15_000)
    expect(first).to_contain_text("using the bundled mock server")
    expect(widget.locator(".agent-nb-text")).to_contain_text("Notes on", timeout=15_000)
    expect(first.locator(".agent-nb-saved")).to_be_hidden()  # the saved view waits out of sight
    _check_status_reads_well(page, first, "JupyterLab Light")
    shot(page, "restart-1-light")
    use_theme(page, "JupyterLab Dark")
    _check_status_reads_well(page, first, "JupyterLab Dark")
    shot(page, "restart-2-dark")

    # The saved view (out of sight) is kept up to date as the run goes on.
    hidden = first.locator(".agent-nb-saved")
    wait_until(lambda: _seconds_in(hidden.text_content() or "") >= 5, 30, "the saved view to be brought up to date")

    # Restart the kernel while the run goes on: the old view must not pretend.
    restart_kernel(page)
    expect(widget).to_have_class(re.compile(r"\bagent-nb-stale\b"), timeout=30_000)
    expect_kernel_idle(page)
    note = widget.locator(".agent-nb-stale-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("This view stopped updating")
    expect(note).to_contain_text(re.compile(r"%agent resume run_[0-9a-f]{16}"))
    for gone in (widget.get_by_role("button", name="Cancel"), widget.get_by_role("button", name="Resume"),
                 widget.locator(".widget-hbox .agent-nb-live-only")):
        expect(gone.first).to_be_hidden()
    icons = broken_link_icons(first)
    assert icons == 0, f"{icons} broken-link icons are showing"
    first.evaluate("el => el.scrollIntoView({block: 'start'})")
    shot(page, "restart-3-stale-dark")

    # The new kernel says what is unfinished; %agent resume --all picks the run up, exactly.
    run_cell(page, cells, 2)
    wait_cell_done(cells.nth(2), 30)
    expect(cells.nth(2)).to_contain_text("agent-nb: 1 run is unfinished on this machine (restart); re-attach with "
                                         "%agent resume --all")
    run_cell(page, cells, 3)
    expect(cells.nth(3).locator(".agent-nb-run")).to_be_visible(timeout=15_000)
    run_cell(page, cells, 4)
    wait_cell_done(cells.nth(4), 120)
    report = cells.nth(4).locator(".jp-OutputArea-output").first.inner_text()
    assert re.search(r"SERVER completed (\d+) RUN completed \1 MATCH True", report), report
    resumed = cells.nth(3).locator(".agent-nb-saved")
    expect(resumed).to_be_visible(timeout=15_000)
    expect(resumed.locator("b").first).to_have_text("completed")
    expect(widget).to_have_class(re.compile(r"\bagent-nb-stale\b"))  # the old kernel's view still says so
    cells.nth(3).evaluate("el => el.scrollIntoView({block: 'start'})")
    shot(page, "restart-4-resumed-dark")
    use_theme(page, "JupyterLab Light")
    shot(page, "restart-5-resumed-light")

    # Saved and reopened, with no live view: the first run's saved view says what was last known and what to do.
    page.keyboard.press("Control+s")
    wait_until(lambda: "agent-nb-saved" in json.dumps(lab.api("GET", f"contents/{RESTART_NOTEBOOK}").json()),
               20, "the notebook to be saved with its saved views")
    page.reload()
    expect_kernel_idle(page)
    saved = cells.nth(1).locator(".agent-nb-saved")
    expect(saved).to_be_visible(timeout=15_000)
    expect(saved).to_contain_text("as last seen")
    assert _seconds_in(saved.inner_text()) >= 5, "the saved view was not kept up to date while the run went on"
    expect(saved).to_contain_text(re.compile(r"re-attach with\s+%agent resume run_[0-9a-f]{16}"))
    expect(cells.nth(1).get_by_role("button")).to_have_count(0)
    cells.nth(1).evaluate("el => el.scrollIntoView({block: 'start'})")
    shot(page, "restart-6-reopened")


def test_the_timeline_updates_while_a_cell_sleeps_and_approve_continues_the_run(lab: Lab, page: Page) -> None:
    drive_with_diagnostics(lab, page, _drive_the_agent, "agent-failure")


def _drive_the_agent(lab: Lab, page: Page) -> None:
    lab.add_notebook(AGENT_NOTEBOOK, AGENT_CELLS)
    cells = open_notebook(lab, page, AGENT_NOTEBOOK, len(AGENT_CELLS))
    for index in (0, 1):
        run_cell(page, cells, index)
        wait_cell_done(cells.nth(index), 30)
    research = cells.nth(2)
    run_cell(page, cells, 2)  # the research run starts; the next cell blocks the kernel for 5 s
    run_cell(page, cells, 3)
    steps = research.locator(".agent-nb-run .agent-nb-steps .widget-html")
    expect(steps.first).to_be_visible(timeout=15_000)
    step_line = research.locator(".agent-nb-current-step")
    first = (steps.count(), step_line.inner_text())
    # While the kernel sleeps, the timeline goes on: more steps, and the current step changes.
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length > n",
        arg=[".agent-nb-run .agent-nb-steps .widget-html", first[0]], timeout=4_000)
    assert prompt_of(cells.nth(3)).startswith("[*]"), "the sleep ended too soon"
    assert "searching" in step_line.inner_text() or "reading" in step_line.inner_text() or \
        "finding" in step_line.inner_text(), step_line.inner_text()
    shot(page, "agent-timeline")
    wait_cell_done(cells.nth(3), 30)
    # The approval: the widget shows the call and its buttons; the run waits until the click.
    payment = cells.nth(4)
    run_cell(page, cells, 4)
    approval = payment.locator(".agent-nb-approval")
    expect(approval).to_be_visible(timeout=20_000)
    expect(approval).to_contain_text("transfer")
    expect(payment.locator(".agent-nb-run .widget-hbox .widget-html").first).to_contain_text(
        "waiting for approval", timeout=10_000)
    approval.scroll_into_view_if_needed()
    shot(page, "agent-approval")
    approval.locator("button", has_text="Approve").click()
    run_cell(page, cells, 5)
    expect(cells.nth(5).locator(".jp-OutputArea-output")).to_contain_text(re.compile(r"SENT \[\d+\] completed"),
                                                                          timeout=30_000)
    # The research run finished with its sources as links that open safely in a new tab.
    source = research.locator(".agent-nb-sources a").first
    expect(source).to_be_visible(timeout=30_000)
    assert source.get_attribute("rel") == "noopener noreferrer nofollow" and source.get_attribute("target") == \
        "_blank"


def test_a_run_that_ends_while_the_user_is_away_notifies_and_marks_the_tab(lab: Lab, page: Page) -> None:
    drive_with_diagnostics(lab, page, _drive_the_notification, "notify-failure")


def _drive_the_notification(lab: Lab, page: Page) -> None:
    lab.add_notebook(NOTIFY_NOTEBOOK, NOTIFY_CELLS)
    page.context.grant_permissions(["notifications"], origin=lab.url)
    cells = open_notebook(lab, page, NOTIFY_NOTEBOOK, len(NOTIFY_CELLS))
    assert page.evaluate("() => Notification.permission") == "granted"
    page.evaluate(NOTIFY_SPY)
    title = page.title()
    run_cell(page, cells, 0)
    wait_cell_done(cells.nth(0), 30)
    run_cell(page, cells, 1)
    page.wait_for_function("() => window.__notifications.length > 0", timeout=30_000)
    assert page.evaluate("() => window.__notifications") == ["report completed"]
    assert page.title().startswith("✔ report completed")
    shot(page, "notified")
    # Back to the page: the mark goes.
    page.evaluate("() => { window.__away = false; document.dispatchEvent(new Event('visibilitychange')); }")
    page.wait_for_function("title => document.title === title", arg=title, timeout=5_000)
