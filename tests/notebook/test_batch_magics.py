"""``%%agent_batch`` and ``%agent batches`` through a real IPython shell, against the mock server: a batch per cell,
shown live, re-attached when the cell runs again, and mistakes that read as one sentence."""

from __future__ import annotations

import html
import re

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from agent_nb.batch import Batch
from agent_nb.notebook import BatchTable, BatchWidget
from agent_nb.notebook._commands import unfinished_summary

from ..helpers import wait_until

FAST = "--metadata mock_options=tokens=10,tps=0,ttft=0,queue_delay=0"
SLOW = "--metadata mock_options=tokens=2000,tps=50,ttft=0,queue_delay=0"
FAILING = "--max-attempts 1 --metadata mock_faults=fail_at=2"
PROMPTS = "\n".join(f"Summarise document {i}" for i in range(30))


def batch_cell(shell: InteractiveShell, line: str, body: str = PROMPTS) -> Batch:
    shell.run_cell_magic("agent_batch", f"-o _batch {line}", body)
    batch = shell.user_ns.pop("_batch")
    assert isinstance(batch, Batch)
    return batch


def test_a_30_prompt_cell_runs_to_the_end_with_wait_and_its_widget_shows_it(shell: InteractiveShell) -> None:
    batch = batch_cell(shell, f"--wait {FAST}", PROMPTS + "\n\n   \n")  # blank lines are not prompts
    progress = batch.progress
    assert progress.state == "completed" and progress.total == 30 and progress.done == 30
    widget = BatchWidget.for_batch(batch)
    assert widget.bar.value == widget.bar.max == 30 and widget.bar.bar_style == "success"
    summary = widget.summary.value
    for part in ("completed", "30 done", "0 failed", "0 running", "0 waiting"):
        assert part in summary, part
    assert "30/30" in widget.counter.value and widget.cancel_button.disabled and widget.retry_button.disabled
    assert widget.redraws <= widget.updates + 2  # a draw per report at most (and the first and last looks)
    assert [r.status for r in batch.results()] == ["completed"] * 30
    assert batch.results()[0].text


def test_out_binds_the_batch_and_displaying_it_shows_its_widget(shell: InteractiveShell) -> None:
    shell.run_cell_magic("agent_batch", f"-o jobs --wait {FAST}", "One\nTwo")
    batch = shell.user_ns["jobs"]
    assert isinstance(batch, Batch) and batch.progress.done == 2
    data, _ = shell.display_formatter.format(batch)
    widget = BatchWidget.for_batch(batch)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.model_id
    assert data["text/plain"] == f"batch {batch.name}: {batch.progress.summary()}"
    shell.run_line_magic("unload_ext", "agent_nb")
    data, _ = shell.display_formatter.format(batch)
    assert "application/vnd.jupyter.widget-view+json" not in data and data["text/plain"].startswith("Batch(")
    shell.run_line_magic("load_ext", "agent_nb")
    assert "agent_batch" in shell.magics_manager.magics["cell"]


def test_the_same_cell_run_again_reattaches_to_its_batch(shell: InteractiveShell) -> None:
    first = batch_cell(shell, f"--wait {FAST}", "Alpha\nBeta")
    assert first.name.startswith("cell-") and len(first.name) == len("cell-") + 12
    again = batch_cell(shell, f"--wait --concurrency 4 {FAST}", "Alpha\nBeta")  # how it is worked is not its name
    assert again.name == first.name
    assert "Re-attached to the stored batch" in BatchWidget.for_batch(again).note.value
    assert [r.run_id for r in again.results()] == [r.run_id for r in first.results()]  # nothing paid twice
    edited = batch_cell(shell, f"--wait {FAST}", "Alpha\nGamma")
    assert edited.name != first.name
    other_model = batch_cell(shell, f"--wait --model gpt-5 {FAST}", "Alpha\nBeta")
    assert other_model.name != first.name
    named = batch_cell(shell, f"--wait --name reports {FAST}", "Alpha")
    assert named.name == "reports"


MEDIUM = "--metadata mock_options=tokens=40,tps=100,ttft=0,queue_delay=0"  # about 0.4 s a run


def test_an_empty_cell_with_the_name_reattaches_after_a_restart_and_nothing_runs_twice(
        shell: InteractiveShell) -> None:
    first = batch_cell(shell, f"--name restartable --concurrency 4 {MEDIUM}")
    wait_until(lambda: first.progress.done >= 4, timeout=30, what="four items done")
    first.stop()  # as a kernel restart would: the engine stops, the runs go on at the service
    shell.magics_manager.registry["BatchMagics"].batches.clear()
    assert "restartable (" in (unfinished_summary(first.store) or "")
    assert "%agent_batch --name restartable" in (unfinished_summary(first.store) or "")
    again = batch_cell(shell, "--name restartable --wait", "\n")
    assert again is not first and again.progress.state == "completed" and again.progress.done == 30
    assert again.concurrency == 4  # worked at the pace it was started with
    widget = BatchWidget.for_batch(again)
    assert re.search(r"Re-attached to the stored batch restartable: \d+ unfinished items", widget.note.value)
    results = again.results()
    assert all(r.status == "completed" and r.attempts == 1 for r in results)  # none was created twice
    assert len({r.run_id for r in results}) == 30
    assert unfinished_summary(again.store) is None
    line_form = shell.run_line_magic("agent_batch", "--name restartable -o same")  # the line form too
    assert line_form is None and shell.user_ns.pop("same").progress.done == 30


def test_resume_all_leaves_a_batchs_runs_to_the_batch_and_says_how_to_reattach(shell: InteractiveShell) -> None:
    batch = batch_cell(shell, f"--name 'long haul' --concurrency 3 {SLOW}")
    wait_until(lambda: batch.progress.running == 3, timeout=30, what="three runs in flight")
    batch.stop()
    agent_magics = shell.magics_manager.registry["AgentMagics"]
    agent_magics.runs.clear()
    said = shell.run_line_magic("agent", "resume --all")
    assert said == ("No unfinished runs to re-attach to. 1 batch has unfinished items: long haul (30 of 30 items "
                    "unfinished); re-attach with %agent_batch --name 'long haul' (%agent batches lists them).")
    assert agent_magics.runs == []  # no view per batch run: the batch follows its own
    again = batch_cell(shell, "--name 'long haul'", "\n")
    assert again.working
    assert shell.run_line_magic("agent", "resume --all") == "No unfinished runs to re-attach to."  # worked here
    again.cancel()
    again.wait(60)


def test_agent_runs_lists_one_batchs_runs_and_says_how_many_shown_belong_to_batches(
        shell: InteractiveShell) -> None:
    shell.run_cell_magic("agent", f"--name solo --wait {FAST}", "A run of its own")
    batch_cell(shell, f"--name small --wait {FAST}", "One\nTwo\nThree")
    batch_cell(shell, f"--name 'big one' --wait {FAST}", "\n".join(f"Item {i}" for i in range(60)))
    everything = shell.run_line_magic("agent", "runs")
    assert len(everything.records) == 50 and everything.note is not None
    assert everything.note.startswith("50 of these runs belong to batches: %agent runs --batch NAME")
    assert repr(everything).endswith(everything.note) and html.escape(everything.note) in everything._repr_html_()
    small = shell.run_line_magic("agent", "runs --batch small")
    assert sorted(r.name for r in small.records) == [f"small/{r.key}" for r in sorted(
        Batch.resume("small", start=False).results(), key=lambda r: f"small/{r.key}")]
    assert small.note is None and all(r.labels["batch"] == "small" for r in small.records)
    big = shell.run_line_magic("agent", "runs completed --batch 'big one'")
    assert len(big.records) == 50 and big.note == "Batch big one: the latest 50 of its 60 items."
    assert repr(shell.run_line_magic("agent", "runs failed --batch small")) == "No failed runs in batch small yet."
    with pytest.raises(UsageError, match="there is no stored batch 'ghost'"):
        shell.run_line_magic("agent", "runs --batch ghost")
    with pytest.raises(UsageError, match="'soon' is not a run status"):
        shell.run_line_magic("agent", "runs soon --batch small")


def test_reattaching_says_what_is_wrong_with_the_name_or_the_options(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="there is no stored batch 'ghost' to re-attach to"):
        shell.run_cell_magic("agent_batch", "--name ghost", "\n")
    batch_cell(shell, f"--name kept --wait {FAST}", "One")
    with pytest.raises(UsageError, match="--model, --max-attempts only apply to new prompts: re-attaching to 'kept'"):
        shell.run_line_magic("agent_batch", "--name kept --model o3 --max-attempts 2")


def test_the_batch_view_carries_what_the_page_shows_once_its_kernel_is_gone(shell: InteractiveShell) -> None:
    batch = batch_cell(shell, f"--name 'my filings' --wait {FAST}", "One")
    widget = BatchWidget.for_batch(batch)
    assert widget.liveness in widget.children and widget.liveness.run_key == ""
    assert "agent-nb-stale-note" in widget.stale_note._dom_classes
    assert "This view stopped updating" in widget.stale_note.value
    assert "%agent_batch --name &#x27;my filings&#x27;" in widget.stale_note.value  # quoted, and escaped
    live_only = [child for child in widget.children if "agent-nb-live-only" in child._dom_classes]
    assert len(live_only) == 1 and widget.cancel_button in live_only[0].children  # hidden once the kernel is gone
    assert widget.retry_button in live_only[0].children


def test_a_cell_shown_again_while_its_batch_works_shows_the_same_batch(shell: InteractiveShell) -> None:
    first = batch_cell(shell, f"--concurrency 2 {SLOW}", "Long one\nLong two\nLong three")
    again = batch_cell(shell, f"--concurrency 2 {SLOW}", "Long one\nLong two\nLong three")
    assert again is first and "already working in this kernel" in BatchWidget.for_batch(first).note.value
    first.cancel()
    first.wait(30)


def test_from_takes_the_prompts_of_a_list(shell: InteractiveShell) -> None:
    shell.user_ns["questions"] = [f"Question {i}" for i in range(5)]
    shell.run_line_magic("agent_batch", f"--from questions -o answers --wait {FAST}")
    batch = shell.user_ns["answers"]
    assert batch.progress.done == 5 and batch.progress.state == "completed"
    again = batch_cell(shell, f"--from questions --wait {FAST}", "\n")  # the cell form, with a blank body
    assert again.name == batch.name


def test_from_takes_the_keys_and_prompts_of_a_dict(shell: InteractiveShell) -> None:
    shell.user_ns["by_id"] = {"doc-1": "First", "doc-2": "Second", "doc-3": "Third"}
    shell.run_line_magic("agent_batch", f"--from by_id -o keyed --wait {FAST}")
    results = shell.user_ns["keyed"].results()
    assert [r.key for r in results] == ["doc-1", "doc-2", "doc-3"]
    assert all(r.status == "completed" for r in results)


def test_failures_turn_the_bar_red_and_their_errors_are_shown_escaped(shell: InteractiveShell) -> None:
    shell.user_ns["hostile"] = {'<script>alert("k")</script>': "First", "<img src=x onerror=alert(1)>": "Second"}
    shell.run_line_magic("agent_batch", f"--from hostile -o failing --wait {FAILING}")
    batch = shell.user_ns["failing"]
    widget = BatchWidget.for_batch(batch)
    assert batch.progress.failed == 2 and widget.bar.bar_style == "danger" and "2 failed" in widget.summary.value
    assert not widget.retry_button.disabled
    value = widget.errors.value
    assert "mock fault at event 2" in value and "&lt;script&gt;alert(&quot;k&quot;)&lt;/script&gt;" in value
    assert "<script" not in value.lower() and "<img" not in value.lower()
    table = shell.run_line_magic("agent", "batches")
    assert "<script" not in table._repr_html_().lower()


def test_retry_failed_sends_the_failed_items_again_after_the_batch_ended(shell: InteractiveShell) -> None:
    batch = batch_cell(shell, f"--wait {FAILING}", "First\nSecond")
    widget = BatchWidget.for_batch(batch)
    assert batch.progress.failed == 2 and not widget.retry_button.disabled
    first_runs = {r.run_id for r in batch.results()}
    widget.retry_button.click()
    assert "Retrying 2 failed items." in widget.note.value
    wait_until(lambda: all(r.status == "failed" and r.run_id not in first_runs for r in batch.results()),
               timeout=30, what="the failed items to be sent again, as new runs, and end")
    batch.wait(30)
    widget.refresh()
    assert batch.progress.failed == 2 and widget.bar.bar_style == "danger"  # the mock fails them again
    wait_until(lambda: "Retried 2 failed items: 2 failed again" in widget.note.value, timeout=10,
               what="the note to say how the retry went")


def test_cancel_all_cancels_a_working_batch(shell: InteractiveShell) -> None:
    batch = batch_cell(shell, f"--concurrency 4 {SLOW}")
    widget = BatchWidget.for_batch(batch)
    wait_until(lambda: batch.progress.running, what="the batch to start its runs")
    widget.cancel_button.click()
    assert widget.cancel_button.disabled
    batch.wait(60)
    widget.refresh()
    assert batch.progress.state == "cancelled" and widget.bar.bar_style == "warning"
    assert widget.cancel_button.disabled and "Cancelled the batch" in widget.note.value


def test_agent_batches_lists_the_stored_batches_newest_first(shell: InteractiveShell) -> None:
    empty = shell.run_line_magic("agent", "batches")
    assert isinstance(empty, BatchTable) and repr(empty) == "No batches in the store yet."
    assert empty._repr_html_() == "<p>No batches in the store yet.</p>"
    batch_cell(shell, f"--wait --name older {FAST}")
    batch_cell(shell, f"--wait --name '<b>newer</b>' {FAILING}", "Fails")
    table = shell.run_line_magic("agent", "batches")
    lines = repr(table).splitlines()
    assert lines[0].split() == ["name", "state", "done", "failed", "running", "waiting", "total", "age"]
    assert lines[1].split()[:7] == ["<b>newer</b>", "completed", "0", "1", "0", "0", "1"]
    assert lines[2].split()[:7] == ["older", "completed", "30", "0", "0", "0", "30"]
    page = table._repr_html_()
    assert "<td>&lt;b&gt;newer&lt;/b&gt;</td>" in page and "<b>newer" not in page
    assert "%agent batches" in repr(shell.run_line_magic("agent", "help"))
    with pytest.raises(UsageError, match="takes no options"):
        shell.run_line_magic("agent", "batches --all")


@pytest.mark.parametrize(("line", "body", "message"), [
    ("--colour red", PROMPTS, r"unrecognized arguments: --colour red; %agent help lists its options\.$"),
    ("--concurrency 0", PROMPTS, "--concurrency: expected a whole number of at least 1, not '0'"),
    ("--mode fast", PROMPTS, "--mode: invalid choice: 'fast'"),
    ("--rpm -5", PROMPTS, "--rpm: expected a positive number"),
    ("--metadata novalue", PROMPTS, "--metadata takes KEY=VALUE, got 'novalue'"),
    ("", "  \n\n ", "needs prompts: one per line in the cell body"),
    ("--from nowhere", "\n", "--from nowhere: nothing is called 'nowhere' in this notebook"),
    ("--from questions", "A prompt", "the cell body must be blank"),
    ("--from count", "\n", "'count' is a int, not a list, dict or pandas Series"),
    ("--from nothing", "\n", "'nothing' is empty, so there is nothing to ask"),
    ("--agent missing", PROMPTS, "--agent missing: nothing is called 'missing'"),
    ("-o 'not a name'", PROMPTS, "a variable name is letters"),
    ('--name "unclosed', PROMPTS, "cannot read the options"),
])
def test_mistakes_are_usage_errors_that_name_the_problem(shell: InteractiveShell, line: str, body: str,
                                                         message: str) -> None:
    shell.user_ns.update(questions=["Q"], count=3, nothing=[])
    with pytest.raises(UsageError, match=message) as caught:
        shell.run_cell_magic("agent_batch", line, body)
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert Batch.stored() == []  # nothing was started


def test_a_bad_input_the_batch_layer_refuses_is_a_usage_error_too(shell: InteractiveShell) -> None:
    shell.user_ns["mixed"] = ["A prompt", 42]
    with pytest.raises(UsageError, match="Input 1 is a int"):
        shell.run_line_magic("agent_batch", "--from mixed")
