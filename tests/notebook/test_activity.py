"""The run widget shows the agent at work: the current step, a block per step, sources, approvals with buttons, and
an answer drawn in pages; everything from the model stays inert."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from agent_nb import Agent, FunctionTool, ResponsesClient, tool
from agent_nb.notebook import NotebookRun, RunCard, RunWidget
from agent_nb.notebook._answer_view import PAGE_SIZE, AnswerView
from mock_server import MockServer

from ..helpers import wait_until

HOSTILE = "<script>alert(2)</script>"
FAST = "tokens=30,tps=0,ttft=0,queue_delay=0,tool_time=0"


def agent_cell(shell: InteractiveShell, agent: Agent, steps: list[dict[str, Any]], *, wait: bool) -> NotebookRun:
    shell.user_ns["analyst"] = agent
    script = shlex.quote(f"mock_agent={json.dumps(steps)}")
    shell.run_cell_magic("agent", f"-o _run --agent analyst {'--wait' if wait else ''} --metadata "
                                  f"mock_options={FAST} --metadata {script}", "Research this")
    handle = shell.user_ns["_run"]
    assert isinstance(handle, NotebookRun)
    return handle


def transfer_tool() -> tuple[FunctionTool, list[int]]:
    """A tool that needs approval, and the amounts it was called with."""
    sent: list[int] = []

    @tool(approval_mode="always_require")
    def transfer(amount: int) -> str:
        sent.append(amount)
        return f"sent {amount}"

    return transfer, sent


def test_each_step_its_sources_and_the_tools_results_are_shown_and_inert(shell: InteractiveShell,
                                                                         mock: MockServer) -> None:
    @tool
    def lookup(term: str) -> str:
        return f'found <img src=x onerror="alert(1)"> {term}'

    agent = Agent(ResponsesClient(mock.url, "sk-test"), model="o3", tools=[lookup], store=False)
    steps = [{"reasoning": HOSTILE}, {"search": HOSTILE}, {"open_page": "https://example.com/a"},
             {"code": "print(1)", "logs": HOSTILE}, {"call": "lookup", "arguments": {"term": HOSTILE}},
             {"answer": f"Per the source {HOSTILE}.", "citations": [
                 {"url": "https://example.com/a", "title": HOSTILE, "text": "Per the source"},
                 {"url": "javascript:alert(3)", "title": "evil", "text": "source"}]}]
    handle = agent_cell(shell, agent, steps, wait=True)
    assert handle.status == "completed", handle.message
    widget = RunWidget.for_run(handle)
    widget.refresh(force=True)
    blocks = [child.value for child in widget.activity.steps.children]
    assert len(blocks) == 5  # reasoning, search, page, code, call (the answer is drawn below, outputs in the call)
    assert "Reasoning" in blocks[0] and "searching: " in blocks[1] and "reading example.com/a" in blocks[2]
    assert "Code" in blocks[3] and "Tool call: lookup(" in blocks[4] and "found &lt;img" in blocks[4]
    sources = widget.sources.value
    assert '<a href="https://example.com/a" target="_blank" rel="noopener noreferrer nofollow">' in sources
    card = RunCard(handle)._repr_mimebundle_()["text/html"]
    for shown in [*blocks, sources, widget.body.value, card]:
        assert "<script" not in shown and "<img" not in shown and "onerror=\"" not in shown
        assert 'href="javascript:' not in shown
    assert "&lt;script&gt;" in blocks[0] and "evil" in sources  # shown as text, not linked
    assert widget.activity.step_line.value == ""  # no "now: …" once the run is over


def test_an_approval_is_answered_with_the_widgets_button_and_the_run_goes_on(shell: InteractiveShell,
                                                                            mock: MockServer) -> None:
    transfer, sent = transfer_tool()

    agent = Agent(ResponsesClient(mock.url, "sk-test"), model="o3", tools=[transfer], store=False)
    handle = agent_cell(shell, agent, [{"call": "transfer", "arguments": {"amount": 5}},
                                       {"answer": "Done: {output}"}], wait=False)
    wait_until(lambda: handle.status == "waiting", what="the run to wait for approval")
    widget = RunWidget.for_run(handle)
    widget.refresh(force=True)
    assert "waiting for your approval to call transfer" in widget.activity.step_line.value
    assert widget.cancel_button.disabled  # the response has ended: there is nothing to cancel, only to answer
    (row,) = widget.activity.approvals.children
    assert "transfer" in row.children[0].value and "&quot;amount&quot;: 5" in row.children[0].value
    approve = row.children[1].children[0]
    assert approve.description == "Approve" and sent == []
    approve.click()
    wait_until(lambda: handle.finished, what="the approved run to finish")
    assert (handle.status, handle.text, sent) == ("completed", "Done: sent 5", [5])
    widget.refresh(force=True)
    assert widget.activity.approvals.children == ()


def test_an_unknown_agent_name_is_a_usage_error(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="nothing is called 'nobody'"):
        shell.run_cell_magic("agent", "--agent nobody", "Hi")
    shell.user_ns["notagent"] = [1, 2]
    with pytest.raises(UsageError, match="is a list, not an agent_nb Agent"):
        shell.run_cell_magic("agent", "--agent notagent", "Hi")


def test_the_answer_is_drawn_in_pages_so_a_redraw_sends_only_the_page_being_written() -> None:
    view = AnswerView()
    paragraph = "word " * 200 + "\n\n"
    text = ""
    most = 0
    for _ in range(400):  # ~400 KB of answer
        text += paragraph
        before = view.sent
        view.show(text)
        most = max(most, view.sent - before)
    assert len(view.children) > 10
    assert most < 3 * PAGE_SIZE  # what one redraw sends does not grow with the answer
    assert view.value.count("<p>") == 400  # and nothing was lost between pages
    fenced = AnswerView()
    code = "```\n" + "x = 1\n\n" * 5000 + "```\n"
    fenced.show(code)
    assert len(fenced.children) == 1  # never cut inside fenced code


def test_a_run_waiting_for_approval_is_answered_after_a_kernel_restart(shell: InteractiveShell,
                                                                       mock: MockServer) -> None:
    transfer, sent = transfer_tool()

    agent = Agent(ResponsesClient(mock.url, "sk-test"), model="o3", tools=[transfer])
    first = agent_cell(shell, agent, [{"call": "transfer", "arguments": {"amount": 7}}, {"answer": "{output}"}],
                       wait=True)
    assert first.status == "waiting" and first.run_id is not None
    # A new kernel: nothing of the old one is left but the run store and the notebook's code.
    shell.run_line_magic("unload_ext", "agent_nb")
    shell.run_line_magic("load_ext", "agent_nb")
    shell.user_ns["bank"] = Agent(ResponsesClient(mock.url, "sk-test"), model="o3", tools=[transfer])
    shell.run_line_magic("agent", f"resume {first.run_id} --agent bank")
    magics = shell.magics_manager.registry["AgentMagics"]
    again = magics.runs[-1]
    wait_until(lambda: again.status == "waiting" and again.requests, what="the re-attached run to show its request")
    widget = RunWidget.for_run(again)
    widget.refresh(force=True)
    (row,) = widget.activity.approvals.children
    row.children[1].children[0].click()  # Approve
    wait_until(lambda: again.finished, what="the approved run to finish")
    assert (again.status, again.text, sent) == ("completed", "sent 7", [7])


def test_notify_announces_the_end_and_the_wait_for_approval(shell: InteractiveShell, mock: MockServer) -> None:
    shell.run_cell_magic("agent", "-o _run --notify --name quick --wait --metadata mock_options=tokens=10,tps=0",
                         "Hi")
    handle = shell.user_ns["_run"]
    widget = RunWidget.for_run(handle)
    assert widget.notifier is not None and widget.notifier in widget.children
    assert widget.notifier.notice["title"] == "quick completed" and widget.notifier.notice["tag"] == handle.key

    transfer, _ = transfer_tool()
    shell.run_line_magic("config", "AgentMagics.notify = True")
    agent = Agent(ResponsesClient(mock.url, "sk-test"), model="o3", tools=[transfer], store=False)
    waiting = agent_cell(shell, agent, [{"call": "transfer", "arguments": {"amount": 1}}, {"answer": "ok"}],
                         wait=True)
    notice = RunWidget.for_run(waiting).notifier.notice  # type: ignore[union-attr]
    assert notice["title"] == "agent-nb run is waiting for your approval"
