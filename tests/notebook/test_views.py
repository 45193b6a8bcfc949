"""What a run's views show, live and saved: nothing that pretends, nothing hidden, nothing that loads by itself."""

from __future__ import annotations

import re

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

from agent_nb.notebook import RunCard, RunWidget
from agent_nb.notebook._style import COLOURS, LABELS
from mock_server import MockServer

from ..helpers import wait_until
from .test_magics import cell, meta


def test_a_finished_runs_views_show_its_last_token_and_how_often_it_reconnected(shell: InteractiveShell) -> None:
    run = cell(shell, f"--wait {meta(tokens=60, faults='drop_after=15,drops=2')}", "Reconnect twice")
    assert run.status == "completed" and run.reconnects == 2 and run.token is None
    widget = RunWidget.for_run(run)
    last = str(run.last_token)
    assert last.startswith("anb1.") and widget.token_box.value == last
    assert "has ended" in widget.token_note.value and "reconnected 2 times" in widget.meta.value
    saved = RunCard(run)._repr_mimebundle_()["text/html"]
    assert last in saved and "the run has ended" in saved and "reconnected 2 times" in saved
    assert "%agent resume" not in saved  # nothing to re-attach to


def test_an_unfinished_runs_saved_view_says_it_is_as_last_seen_and_how_to_reattach(shell: InteractiveShell) -> None:
    run = cell(shell, meta(tokens=2000, tps=50), "Still going")
    wait_until(lambda: run.text and run.run_id, what="text")
    bundle = RunCard(run)._repr_mimebundle_()
    assert "as last seen" in bundle["text/html"] and f"%agent resume {run.run_id}" in bundle["text/html"]
    assert f"Re-attach with %agent resume {run.run_id}" in bundle["text/plain"]
    assert f'data-agent-nb-run="{run.key}"' in bundle["text/html"]  # how the live view finds (and hides) it
    widget = RunWidget.for_run(run)
    assert f"%agent resume {run.run_id}" in widget.stale_note.value  # shown by the page once the kernel is gone
    assert widget.liveness.run_key == run.key
    run.cancel()


def test_a_notice_about_the_run_goes_away_when_it_stops_being_true(shell: InteractiveShell) -> None:
    line = meta(tokens=300, tps=100)
    first = cell(shell, line, "Shown again")
    wait_until(lambda: first.text, what="text")
    again = cell(shell, line, "Shown again")
    assert again is first and again.notice is not None and "still going" in again.notice
    first.wait(30)
    assert first.notice is None
    assert "still going" not in RunWidget.for_run(first).message.value


def test_cancel_stays_available_while_the_connection_is_lost(shell: InteractiveShell, mock: MockServer) -> None:
    shell.run_line_magic("config", "AgentMagics.max_retries = 1")
    run = cell(shell, meta(tokens=3000, tps=100, faults="drop_after=10,http_503=1,retry_after=0"), "Lost, yet going")
    wait_until(lambda: run.status == "disconnected", what="connection lost")
    widget = RunWidget.for_run(run)
    widget.refresh(force=True)
    assert not widget.cancel_button.disabled
    widget.cancel_button.click()
    wait_until(lambda: run.status == "cancelled", what="the cancel to reach the service")
    assert httpx.get(f"{mock.url}/responses/{run.response_id}", timeout=10).json()["status"] == "cancelled"
    widget.refresh(force=True)
    assert widget.cancel_button.disabled and widget.resume_button.disabled


@pytest.mark.parametrize("phase", sorted(LABELS))
def test_every_colour_comes_from_the_jupyterlab_theme_with_a_fallback(phase: str) -> None:
    assert re.fullmatch(r"var\(--jp-[a-z0-9-]+, #[0-9a-f]{6}\)", COLOURS[phase]), COLOURS[phase]
