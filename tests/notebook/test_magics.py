"""%%agent and %agent through a real IPython shell, against the mock server."""

from __future__ import annotations

import time

import httpx
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from agent_nb.notebook import NotebookRun, RunCard, RunTable, RunWidget
from mock_server import MockServer

from ..helpers import wait_until


def cell(shell: InteractiveShell, line: str, body: str) -> NotebookRun:
    shell.run_cell_magic("agent", f"-o _run {line}", body)
    handle = shell.user_ns["_run"]
    assert isinstance(handle, NotebookRun)
    return handle


def meta(tokens: int = 40, tps: int = 0, faults: str = "", reply: str = "") -> str:
    parts = [f"--metadata mock_options=tokens={tokens},tps={tps},ttft=0,queue_delay=0"]
    if faults:
        parts.append(f"--metadata mock_faults={faults}")
    if reply:
        parts.append(f"--metadata 'mock_reply={reply}'")
    return " ".join(parts)


def server_text(mock: MockServer, response_id: str) -> str:
    body = httpx.get(f"{mock.url}/responses/{response_id}", timeout=10).json()
    return "".join(c["text"] for item in body["output"] for c in item["content"])


def test_load_and_unload_register_and_remove_the_magics(shell: InteractiveShell) -> None:
    assert "agent" in shell.magics_manager.magics["cell"] and "agent" in shell.magics_manager.magics["line"]
    shell.run_line_magic("unload_ext", "agent_nb")
    assert "agent" not in shell.magics_manager.magics["cell"]
    shell.run_line_magic("load_ext", "agent_nb")
    assert "agent" in shell.magics_manager.magics["line"]


def test_options_are_configurable_traitlets(shell: InteractiveShell) -> None:
    shell.run_line_magic("config", "AgentMagics.model = 'gpt-5'")
    magics = shell.magics_manager.registry["AgentMagics"]
    assert magics.model == "gpt-5"
    assert {"model", "instructions", "poll_interval", "max_retries", "base_url"} <= set(
        magics.trait_names(config=True))


def test_cell_returns_at_once_and_the_run_completes(shell: InteractiveShell, mock: MockServer) -> None:
    started = time.monotonic()
    run = cell(shell, f"--name first {meta(tokens=200, tps=100)}", "Write a market analysis")
    assert time.monotonic() - started < 1.0 and run.running  # the cell did not wait for a 2 s run
    response = run.wait(30)
    assert response is not None and run.status == "completed" and run.token is None
    assert run.text == server_text(mock, run.response_id)  # type: ignore[arg-type]
    assert run.name == "first"


def test_wait_blocks_until_the_run_ends(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta(tokens=60, tps=300)}", "Block")
    assert not run.running and run.status == "completed"


def test_the_run_keeps_streaming_while_a_cell_blocks_the_kernel(shell: InteractiveShell) -> None:
    run = cell(shell, meta(tokens=300, tps=150), "Stream while I block")
    wait_until(lambda: run.text, what="first text")
    before = len(run.text)
    time.sleep(1.0)  # a cell that blocks the kernel's main thread
    assert len(run.text) > before
    run.wait(30)


def test_failure_shows_the_service_message_not_a_traceback(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta(faults='fail_at=8')}", "Fail")
    assert run.status == "failed"
    assert run.error is not None and "mock fault at event 8" in run.error and "Traceback" not in run.error
    widget = RunWidget.for_run(run)
    assert "failed" in widget.status_line.value and "mock fault at event 8" in widget.message.value
    assert widget.resume_button.disabled and widget.cancel_button.disabled


def test_incomplete_is_shown(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta(faults='incomplete_at=5')}", "Cut short")
    assert run.status == "incomplete" and "incomplete" in RunWidget.for_run(run).status_line.value


def test_cancel_button_cancels(shell: InteractiveShell) -> None:
    run = cell(shell, meta(tokens=2000, tps=100), "Long")
    widget = RunWidget.for_run(run)
    wait_until(lambda: run.text and not widget.cancel_button.disabled, what="Cancel to be enabled")
    widget.cancel_button.click()
    wait_until(lambda: run.status == "cancelled" and not run.running, what="cancelled")
    widget.refresh(force=True)
    assert "cancelled" in widget.status_line.value and widget.cancel_button.disabled and widget.resume_button.disabled


def test_connection_lost_then_resume_button_finishes_exactly(shell: InteractiveShell, mock: MockServer) -> None:
    shell.run_line_magic("config", "AgentMagics.max_retries = 1")
    run = cell(shell, meta(tokens=60, faults="drop_after=12,http_503=2,retry_after=0"), "Drop me")
    phases: list[str] = []
    run.add_listener(lambda handle, change: phases.append(handle.phase))
    widget = RunWidget.for_run(run)
    wait_until(lambda: run.status == "disconnected" and not run.running, what="connection lost")
    lost_after = run.elapsed
    seen = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert "reconnecting" in seen
    assert "in_progress" not in seen[seen.index("reconnecting"):seen.index("disconnected")]  # no flash before it
    widget.refresh(force=True)
    assert "connection lost" in widget.status_line.value and not widget.resume_button.disabled
    assert not widget.cancel_button.disabled, "the run may still be going on the service: Cancel stays available"
    shown_elapsed = widget.elapsed_label.value
    wait_until(lambda: widget.elapsed_label.value != shown_elapsed, 5, "the clock to go on while disconnected")
    assert widget.token_box.value.startswith("anb1.")
    shown = run.text
    widget.resume_button.click()
    wait_until(lambda: run.status == "completed" and not run.running, timeout=30, what="completion after Resume")
    assert run.elapsed >= lost_after  # elapsed time counts from the first start, not from the resume
    assert run.text.startswith(shown) and run.text == server_text(mock, run.response_id)  # type: ignore[arg-type]


def test_redraws_stay_bounded_on_a_20000_delta_stream(shell: InteractiveShell) -> None:
    started = time.monotonic()
    run = cell(shell, meta(tokens=20_000, tps=0), "Flood")
    run.wait(120)
    widget = RunWidget.for_run(run)
    elapsed = time.monotonic() - started
    assert len(run.text.split()) >= 19_000
    assert widget.redraws <= elapsed * 4 + 4, (widget.redraws, elapsed)
    assert widget._rendered_length == len(run.text)  # the last redraw shows everything


PAYLOADS = ('<script>alert("x")</script> <img src=x onerror=alert(1)> [click](javascript:alert(2)) '
            '<iframe src="https://example.com"></iframe> <a href="#" onclick="alert(3)">a</a>')


def test_html_in_model_output_renders_inert(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta(reply=PAYLOADS)}", "Inject")
    widget = RunWidget.for_run(run)
    for value in (widget.body.value, RunCard(run)._repr_mimebundle_()["text/html"]):
        lowered = value.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
        assert "javascript:" not in lowered.replace("[click](javascript:alert(2))", "")
        assert "<a href=\"#\" onclick" not in lowered
        assert "&lt;script&gt;" in value


def test_the_api_key_is_nowhere_in_widget_state_or_outputs(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta()}", "Secret")
    widget = RunWidget.for_run(run)
    states = [str(w.get_state()) for w in (widget, *widget.children, *widget.children[0].children)]
    bundle = str(widget._repr_mimebundle_()) + str(RunCard(run)._repr_mimebundle_())
    assert all("sk-notebook-test" not in s for s in [*states, bundle, repr(run)])


def test_follow_up_cell_in_a_session_continues_the_conversation(shell: InteractiveShell, mock: MockServer) -> None:
    first = cell(shell, f"--session s1 {meta(tokens=30, tps=100)}", "Turn one")
    second = cell(shell, f"--session s1 {meta(tokens=30)}", "Turn two")  # starts once the first has finished
    second.wait(30)
    assert first.status == "completed" and second.status == "completed"
    body = httpx.get(f"{mock.url}/responses/{second.response_id}", timeout=10).json()
    assert body["previous_response_id"] == first.response_id


def test_runs_lists_the_store_and_resume_reattaches(shell: InteractiveShell, mock: MockServer) -> None:
    run = cell(shell, f"--name listed --wait {meta()}", "List me")
    table = shell.run_line_magic("agent", "runs")
    assert isinstance(table, RunTable)
    assert "listed" in repr(table) and "completed" in repr(table) and run.run_id in table._repr_html_()
    shell.run_line_magic("agent", f"resume {run.run_id}")
    again = shell.magics_manager.registry["AgentMagics"].runs[-1]
    again.wait(30)
    assert again.text == run.text and again.status == "completed"


def test_rerunning_a_cell_with_an_unfinished_run_reattaches(shell: InteractiveShell) -> None:
    line = meta(tokens=400, tps=80)
    first = cell(shell, line, "Same cell")
    wait_until(lambda: first.text, what="text")
    again = cell(shell, line, "Same cell")  # still live in this kernel: the same run, shown again
    assert again is first and again.notice is not None and "still going" in again.notice
    magics = shell.magics_manager.registry["AgentMagics"]
    magics.runs.clear()  # as after a kernel restart: nothing follows the run in this kernel any more
    second = cell(shell, line, "Same cell")
    assert second.notice is not None and "Re-attached" in second.notice
    wait_until(lambda: second.run_id is not None, what="re-attached run")
    assert second.run_id == first.run_id
    fresh = cell(shell, f"--new {line}", "Same cell")
    wait_until(lambda: fresh.run_id is not None, what="a fresh run")
    assert fresh.run_id != first.run_id
    for handle in (first, second, fresh):
        handle.cancel()


def test_usage_errors_read_like_sentences(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="needs a prompt"):
        shell.run_cell_magic("agent", "", "   ")
    with pytest.raises(UsageError, match="unrecognized arguments: --colour"):
        shell.run_cell_magic("agent", "--colour red", "x")
    with pytest.raises(UsageError, match="Unknown command"):
        shell.run_line_magic("agent", "dance")
    with pytest.raises(UsageError, match="not a continuation token"):
        shell.run_line_magic("agent", "resume nonsense")


def test_mock_commands_start_and_stop_a_server(shell: InteractiveShell) -> None:
    assert "running at http://127.0.0.1:" in shell.run_line_magic("agent", "mock start --options tokens=5,tps=0")
    assert "runs at http://127.0.0.1:" in shell.run_line_magic("agent", "mock status")
    run = cell(shell, "--wait", "Mock me")
    assert run.status == "completed" and len(run.text.split()) >= 4
    assert "This kernel's mock server stopped" in shell.run_line_magic("agent", "mock stop")
