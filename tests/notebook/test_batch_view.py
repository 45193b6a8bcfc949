"""The batch widget on its own: bounded redraws however many snapshots arrive, the final one always drawn, inert
error text, theme colours, and buttons that do what they say (driven by a stand-in batch, so nothing waits on a
service)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace

from agent_nb.batch import BatchProgress
from agent_nb.notebook import BatchWidget
from agent_nb.notebook._batch_view import ERROR_WIDTH, REDRAWS_PER_SECOND, summary_html

from ..helpers import wait_until


class FakeBatch:
    """Stands in for a Batch: a snapshot, observers, and counts of the calls the buttons make."""

    def __init__(self, progress: BatchProgress) -> None:
        self.name = progress.name
        self.progress = progress
        self.working = True
        self.starts = 0
        self.observers: list[Callable[[BatchProgress], None]] = []
        self.cancels = 0
        self.retries = 0

    def on_progress(self, observer: Callable[[BatchProgress], None]) -> None:
        self.observers.append(observer)

    def cancel(self) -> int:
        self.cancels += 1
        return 7

    def retry_failed(self) -> int:
        self.retries += 1
        return self.progress.failed

    def start(self) -> None:
        self.starts += 1


def running(done: int, total: int = 10_000, **changes: object) -> BatchProgress:
    return replace(BatchProgress("fake", total, done=done, running=min(64, total - done),
                                 waiting=max(0, total - done - 64), elapsed=done / 1000, throughput=1000.0),
                   **changes)


def widget_for(progress: BatchProgress) -> tuple[BatchWidget, FakeBatch]:
    batch = FakeBatch(progress)
    return BatchWidget(batch), batch  # type: ignore[arg-type]


def test_redraws_are_coalesced_yet_the_final_snapshot_is_shown() -> None:
    widget, batch = widget_for(running(0))
    assert batch.observers == [widget.update]  # it subscribed itself
    started = time.monotonic()
    for done in range(1, 10_000):
        widget.update(running(done))
    final = BatchProgress("fake", 10_000, done=9_990, failed=10, elapsed=12.0, state="completed")
    widget.update(final)
    elapsed = time.monotonic() - started
    assert widget.updates == 10_000
    assert widget.redraws <= elapsed * REDRAWS_PER_SECOND + 3, (widget.redraws, elapsed)
    assert widget.shown == final and widget.bar.value == widget.bar.max == 10_000
    assert "9990 done" in widget.summary.value and "10 failed" in widget.summary.value
    assert widget.bar.bar_style == "danger" and not widget.retry_button.disabled and widget.cancel_button.disabled
    drawn = widget.redraws
    widget.update(final)  # nothing changed: nothing is drawn
    assert widget.redraws == drawn
    wait_until(lambda: not widget._flush_due, what="the held-back snapshot's flush")  # it must not draw an older one
    assert widget.shown == final and widget.bar.value == 10_000


def test_a_held_back_snapshot_is_drawn_when_the_interval_is_over() -> None:
    widget, _ = widget_for(running(0, total=100))
    widget.update(running(1, total=100))  # drawn, or held: the widget drew its first snapshot a moment ago
    widget.update(running(2, total=100))  # held
    wait_until(lambda: widget.bar.value == 2, timeout=5, what="the held snapshot to be drawn")
    assert widget.shown == running(2, total=100)


def test_the_summary_shows_counts_throughput_eta_elapsed_and_a_rate_limit_pause() -> None:
    progress = BatchProgress("fake", 500, done=412, failed=6, running=64, waiting=18, elapsed=42.0, throughput=9.8,
                             rate_limited=12.0)
    widget, _ = widget_for(progress)
    summary = widget.summary.value
    for part in ("412 done", "6 failed", "64 running", "18 waiting", "9.8 items/s", "ETA 8s", "elapsed 42s",
                 "rate-limited, resuming in 12s"):
        assert part in summary, part
    assert "418/500" in widget.counter.value and widget.bar.value == 418 and widget.bar.bar_style == ""
    assert not widget.cancel_button.disabled and not widget.retry_button.disabled
    assert widget._repr_mimebundle_()["text/plain"] == f"batch fake: {progress.summary()}"
    almost = replace(progress, rate_limited=0.2)  # rounded up: never "resuming in 0s"
    assert "resuming in 1s" in summary_html(almost) and "resuming in 1s" in almost.summary()
    full = replace(progress, store_error="database or <disk> is full")
    assert "the run store refuses writes (database or &lt;disk&gt; is full), retrying" in summary_html(full)
    assert "the run store refuses writes (database or <disk> is full), retrying" in full.summary()
    stopped = replace(progress, state="stopped")  # a stopped batch waits on nothing
    assert "rate-limited" not in summary_html(stopped) and "rate-limited" not in stopped.summary()


def test_the_bar_is_green_when_completed_and_amber_when_cancelled_or_stopped() -> None:
    for state, style in (("completed", "success"), ("cancelled", "warning"), ("stopped", "warning")):
        widget, _ = widget_for(BatchProgress("fake", 5, done=3, cancelled=2 if state == "cancelled" else 0,
                                             waiting=0 if state == "cancelled" else 2, state=state))
        assert widget.bar.bar_style == style, state
        assert widget.cancel_button.disabled and widget.retry_button.disabled
        assert state in widget.summary.value


def test_error_lines_are_escaped_one_line_each_and_truncated() -> None:
    errors = ('k1: <script>alert("x")</script> failed', "k2: <img src=x onerror=alert(1)>\nsecond line",
              "k3: " + "long " * 100)
    widget, _ = widget_for(running(5, total=10, failed=3, errors=errors))
    value = widget.errors.value
    assert "<script" not in value.lower() and "<img" not in value.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in value
    lines = re.findall(r'<div class="agent-nb-batch-error"[^>]*>(.*?)</div>', value)
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[2].endswith("…") and len(lines[2]) == ERROR_WIDTH
    assert "second line" in lines[1]


def test_every_colour_comes_from_the_jupyterlab_theme_with_a_fallback() -> None:
    widget, _ = widget_for(running(5, total=10, failed=1, rate_limited=3.0, errors=("k: boom",)))
    html = widget.summary.value + widget.errors.value + widget.counter.value
    colours = re.findall(r"color:([^;\"]+)", html)
    assert colours and all(re.fullmatch(r"var\(--jp-[a-z0-9-]+, #[0-9a-f]{6}\)", c) for c in colours), colours
    assert "background" not in html  # nothing that would stay light on the dark theme


def test_cancel_all_calls_cancel_once_then_stays_disabled() -> None:
    widget, batch = widget_for(running(5, total=10))
    assert not widget.cancel_button.disabled
    widget.cancel_button.click()
    assert batch.cancels == 1 and widget.cancel_button.disabled
    assert "7 items not started yet will not be sent" in widget.note.value
    widget.update(running(6, total=10))  # still running while the cancels go out: the button stays disabled
    widget.refresh()
    assert widget.cancel_button.disabled


def test_retry_failed_is_disabled_without_failures_and_retries_them_when_there_are() -> None:
    widget, batch = widget_for(BatchProgress("fake", 4, done=4, state="completed"))
    assert widget.retry_button.disabled
    failed = BatchProgress("fake", 4, done=2, failed=2, state="completed", errors=("a: x", "b: y"))
    batch.progress = failed
    widget.update(failed)
    assert not widget.retry_button.disabled and widget.bar.bar_style == "danger"
    widget.retry_button.click()
    assert batch.retries == 1 and "Retrying 2 failed items." in widget.note.value


def test_a_batch_that_stops_without_a_final_report_is_drawn_as_it_ended() -> None:
    widget, batch = widget_for(running(3, total=10))
    batch.progress = BatchProgress("fake", 10, done=3, waiting=7, state="stopped")
    batch.working = False  # as after batch.stop(): its engine reports nothing more
    wait_until(lambda: widget.bar.bar_style == "warning", timeout=5, what="the stopped batch to be drawn")
    assert "stopped" in widget.summary.value



def test_the_outputs_plain_text_is_brought_up_to_date_once_the_batch_ends() -> None:
    widget, batch = widget_for(running(5, total=10))
    texts: list[str] = []

    class Handle:
        def update(self, shown: BatchWidget) -> None:
            texts.append(shown._repr_mimebundle_()["text/plain"])

    widget.show_in(Handle())
    widget.update(running(6, total=10))
    assert texts == []  # a live view says nothing to the saved output while it works
    final = batch.progress = BatchProgress("fake", 10, done=10, elapsed=3.0, state="completed")
    widget.update(final)
    widget.refresh()
    assert texts == [f"batch fake: {final.summary()}"]  # once, for a front end without widgets to show
