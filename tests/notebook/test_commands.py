"""``%agent COMMAND``: answers that read like sentences, for mistakes too, and re-attaching after a restart."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import httpx
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from agent_nb import SQLiteRunStore
from agent_nb.notebook import RunTable
from mock_server import MockServer

from ..helpers import wait_until
from .test_magics import cell, meta


def magics(shell: InteractiveShell) -> object:
    return shell.magics_manager.registry["AgentMagics"]


@pytest.mark.parametrize("line", ['resume "run_123', "runs 'lost", 'cancel "x'])
def test_an_unbalanced_quote_in_a_command_is_a_usage_error(shell: InteractiveShell, line: str) -> None:
    with pytest.raises(UsageError, match=r"cannot read the options .*close the quote"):
        shell.run_line_magic("agent", line)


def test_an_unbalanced_quote_in_the_cell_magic_is_a_usage_error(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="%%agent: cannot read the options"):
        shell.run_cell_magic("agent", '--name "unclosed', "A prompt")


def test_runs_with_a_status_that_does_not_exist_names_the_valid_ones(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="'done' is not a run status; use one of cancelled, completed, failed"):
        shell.run_line_magic("agent", "runs done")
    table = shell.run_line_magic("agent", "runs failed")
    assert isinstance(table, RunTable) and repr(table) == "No failed runs in the store."


def test_cancelling_a_run_that_has_ended_says_so(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta()}", "Done already")
    answer = shell.run_line_magic("agent", f"cancel {run.run_id}")
    assert answer == f"Run {run.run_id} had already ended (completed); there was nothing to cancel."
    going = cell(shell, meta(tokens=2000, tps=50), "Cancel me")
    wait_until(lambda: going.response_id, what="the run to start")
    magics(shell).runs.clear()  # as from another kernel
    assert shell.run_line_magic("agent", f"cancel {going.run_id}") == f"Cancelled {going.run_id}."


def test_a_lost_run_is_listed_with_why_and_its_cell_starts_afresh(shell: InteractiveShell, mock: MockServer) -> None:
    line = meta(tokens=3000, tps=50)
    first = cell(shell, line, "Deleted on the service")
    wait_until(lambda: first.text, what="text")
    httpx.delete(f"{mock.url}/responses/{first.response_id}", timeout=10).raise_for_status()
    wait_until(lambda: first.status == "lost", what="the run to be lost")
    assert "no response" in (first.error or "")
    table = shell.run_line_magic("agent", "runs lost")
    assert "lost: the service no longer has it" in repr(table) and first.run_id in repr(table)
    magics(shell).runs.clear()
    again = cell(shell, line, "Deleted on the service")  # not a re-attach to the dead run
    wait_until(lambda: again.run_id, what="a new run")
    assert again.run_id != first.run_id and again.notice is None
    again.cancel()


def test_resume_all_reattaches_to_every_unfinished_run_one_view_each(shell: InteractiveShell) -> None:
    runs = [cell(shell, f"--name r{i} {meta(tokens=400, tps=100)}", f"Run {i}") for i in range(3)]
    for run in runs:
        wait_until(lambda run=run: run.text, what="text")  # type: ignore[misc]
    magics(shell).runs.clear()  # a new kernel: nothing followed
    assert shell.run_line_magic("agent", "resume --all") is None
    attached = magics(shell).runs
    assert sorted(h.run_id for h in attached) == sorted(r.run_id for r in runs)
    assert [h.name for h in attached] == ["r0", "r1", "r2"]  # oldest first, like the cells that started them
    for handle in attached:
        handle.wait(30)
        assert handle.status == "completed"
    assert shell.run_line_magic("agent", "resume --all") == "No unfinished runs to re-attach to."
    with pytest.raises(UsageError, match="resume --all"):
        shell.run_line_magic("agent", "resume --everything")


def test_loading_the_extension_says_how_many_runs_are_unfinished(shell: InteractiveShell, agent_nb_home: Path) -> None:
    going = cell(shell, f"--name report {meta(tokens=3000, tps=50)}", "Long")
    wait_until(lambda: going.response_id, what="the run to start")
    shell.run_line_magic("unload_ext", "agent_nb")
    out = io.StringIO()
    with redirect_stdout(out):
        shell.run_line_magic("load_ext", "agent_nb")
    assert out.getvalue().strip() == ("agent-nb: 1 run is unfinished on this machine (report); re-attach with "
                                      "%agent resume --all, or %agent resume RUN_ID (%agent runs lists them).")
    going.cancel()
    shell.run_line_magic("unload_ext", "agent_nb")
    out = io.StringIO()
    with redirect_stdout(out):
        shell.run_line_magic("load_ext", "agent_nb")
    assert out.getvalue() == ""
    assert SQLiteRunStore(agent_nb_home / "runs.sqlite3").get(going.run_id).status == "cancelled"  # type: ignore


def test_mock_status_and_stop_manage_the_bundled_server(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert "No mock server is running" in shell.run_line_magic("agent", "mock status")
    run = cell(shell, f"--wait {meta()}", "On the bundled server")
    assert run.status == "completed"
    status = shell.run_line_magic("agent", "mock status")
    assert "The bundled mock server runs at http://127.0.0.1:" in status and "shared by every kernel" in status
    stopped = shell.run_line_magic("agent", "mock stop")
    assert stopped.startswith("The bundled mock server at http://127.0.0.1:") and "Its runs are kept" in stopped
    assert shell.run_line_magic("agent", "mock stop") == "No mock server is running."
    again = cell(shell, f"--wait {meta()}", "It starts again by itself")
    assert again.status == "completed"
    shell.run_line_magic("agent", "mock stop --bundled")
