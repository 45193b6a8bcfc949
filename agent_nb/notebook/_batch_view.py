"""The live view of a batch, in the manner of ``tqdm.notebook``: its name, a bar, its counts, its latest errors, and
Cancel all / Retry failed.

The batch reports from its own thread a few times a second, and may finish hundreds of items between two reports.
The view keeps only the latest snapshot and draws it at most ``REDRAWS_PER_SECOND`` times a second, and only when
what it shows has changed; a snapshot held back is drawn once the interval is over (on agent-nb's loop), and the
final one (the batch has ended) is drawn at once. So a fast batch costs the front end no more than a slow one.
"""

from __future__ import annotations

import html
import shlex
import threading
import time
import weakref
from typing import Any

import ipywidgets as widgets

from .._errors import AgentNBError
from .._loop import BackgroundLoop
from ..batch import Batch, BatchProgress
from ..batch._progress import format_duration
from ._liveness import Liveness
from ._publish import publish
from ._style import colour, muted

__all__ = ["ERROR_WIDTH", "REDRAWS_PER_SECOND", "BatchWidget", "batch_bundle", "stale_note_html"]

REDRAWS_PER_SECOND = 4
WATCH_INTERVAL = 1.0  # seconds between looks at whether the batch still works here
ERROR_WIDTH = 160  # characters of an error line shown; the rest is in batch.results()
#: How each state of a batch is coloured, as the run phase of the same meaning.
_PHASES = {"running": "in_progress", "completed": "completed", "cancelled": "cancelled", "stopped": "incomplete"}

_widgets: weakref.WeakKeyDictionary[Batch, BatchWidget] = weakref.WeakKeyDictionary()


def bar_style(progress: BatchProgress) -> str:
    """The bar's colour: none while running; once ended ``danger`` with failures, ``warning`` if cancelled or
    stopped, else ``success`` (ipywidgets draws these with JupyterLab's theme colours)."""
    if progress.state == "running":
        return ""
    if progress.failed:
        return "danger"
    return "warning" if progress.state in ("cancelled", "stopped") else "success"


def summary_html(progress: BatchProgress) -> str:
    """The one line under the bar: state, counts, throughput, ETA, elapsed time, and a rate-limit pause."""
    p = progress
    state = f'<b style="color:{colour(_PHASES.get(p.state, p.state))}">{html.escape(p.state)}</b>'
    failed = f"{p.failed} failed"
    parts = [state, f"{p.done} done", f'<span style="color:{colour("failed")}">{failed}</span>' if p.failed else failed]
    if p.cancelled:
        parts.append(f"{p.cancelled} cancelled")
    parts += [f"{p.running} running", f"{p.waiting} waiting"]
    if p.state == "running":
        parts += [f"{p.throughput:.1f} items/s", f"ETA {format_duration(p.eta)}"]
    parts.append(f"elapsed {format_duration(p.elapsed)}")
    if p.store_error:
        parts.append(f'<span style="color:{colour("failed")}">the run store refuses writes '
                     f"({html.escape(p.store_error)}), retrying</span>")
    if p.pause is not None:
        parts.append(f'<span style="color:{colour("waiting")}">rate-limited, resuming in '
                     f"{format_duration(p.pause)}</span>")
    return " &middot; ".join(parts)


def error_line(line: str, width: int = ERROR_WIDTH) -> str:
    """One error (untrusted text from the service) as one escaped line of at most ``width`` characters."""
    text = " ".join(line.split())
    if len(text) > width:
        text = text[:width - 1] + "…"
    return html.escape(text)


def errors_html(errors: tuple[str, ...]) -> str:
    """The latest errors, one escaped line each, under a muted title (every item's is in ``batch.results()``)."""
    if not errors:
        return ""
    style = (f"color:{colour('failed')};font-family:var(--jp-code-font-family, monospace);font-size:smaller;"
             "line-height:1.5;white-space:nowrap;overflow:hidden;text-overflow:ellipsis")
    title = muted(f"latest error{'s' if len(errors) != 1 else ''} (batch.results() has every item's)", small=True)
    return f"<div>{title}</div>" + "".join(f'<div class="agent-nb-batch-error" style="{style}">{error_line(e)}</div>'
                                           for e in errors)


def stale_note_html(name: str) -> str:
    """What the view says once its kernel has gone (the page shows it; the kernel cannot)."""
    again = html.escape(f"%agent_batch --name {shlex.quote(name)}")
    return (f"<b>This view stopped updating:</b> the kernel that worked this batch has stopped; the runs it had "
            f"started go on at the service. Re-attach with <code>{again}</code>: items that ended "
            "are kept, runs in flight are followed, and none is started twice.")


class BatchWidget(widgets.VBox):  # type: ignore[misc]
    """A widget showing one :class:`~agent_nb.batch.Batch` as it goes (one per batch: see :meth:`for_batch`)."""

    def __init__(self, batch: Batch, **kwargs: Any) -> None:
        self.batch = batch
        self.title = widgets.HTML(f"<b>{html.escape(batch.name)}</b>")
        self.bar = widgets.IntProgress(min=0, max=1, value=0,
                                       layout=widgets.Layout(flex="1 1 auto", width="auto", min_width="8em"))
        self.counter = widgets.HTML()
        self.summary = widgets.HTML()
        self.errors = widgets.HTML()
        self.note = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel all", icon="stop",
                                            tooltip="Cancel every unfinished item (runs in flight at the service too)")
        self.retry_button = widgets.Button(description="Retry failed", icon="redo", disabled=True,
                                           tooltip="Start the failed items again")
        self.cancel_button.on_click(lambda _: self._cancel())
        self.retry_button.on_click(lambda _: self._retry())
        self.stale_note = widgets.HTML(stale_note_html(batch.name))  # shown by the page once the kernel is gone
        self.stale_note.add_class("agent-nb-stale-note")
        self.liveness = Liveness()
        header = widgets.HBox([self.title, self.bar, self.counter],
                              layout=widgets.Layout(align_items="center", width="100%"))
        buttons = widgets.HBox([self.cancel_button, self.retry_button])
        buttons.add_class("agent-nb-live-only")
        super().__init__([header, self.summary, self.stale_note, self.errors, buttons, self.note, self.liveness],
                         **kwargs)
        self.add_class("agent-nb-batch")
        self.updates = 0  # snapshots received
        self.redraws = 0  # snapshots drawn (each changed what the view shows)
        self.shown: BatchProgress | None = None
        self._drawn: tuple[Any, ...] | None = None
        self._pending: BatchProgress | None = None
        self._flush_due = False
        self._watching = False
        self._last_draw = float("-inf")
        self._cancelled = False
        self._retried = 0  # items Retry failed sent again, until the batch ends
        self._closed = False
        self.display_handle: Any = None  # the output showing this view, whose plain text is brought up to date
        self._ended = False  # the final snapshot has been drawn (and sent to the display's plain text)
        self._lock = threading.RLock()
        self.refresh()
        self._start_watching(batch.progress)
        batch.on_progress(self.update)

    @classmethod
    def for_batch(cls, batch: Batch) -> BatchWidget:
        """The widget of ``batch`` (one per batch, so showing it twice shows the same live view)."""
        widget = _widgets.get(batch)
        if widget is None or widget._closed:
            widget = _widgets[batch] = cls(batch)
        return widget

    # -- updates ----------------------------------------------------------------------------------------------
    def update(self, progress: BatchProgress) -> None:
        """Take a new snapshot (from any thread): drawn now if it is final or the last draw is old enough, else
        kept, and drawn when the interval is over unless a newer one came first."""
        with self._lock:
            self.updates += 1
            if self._closed:
                return
            self._start_watching(progress)
            wait = 1 / REDRAWS_PER_SECOND - (time.monotonic() - self._last_draw)
            if progress.state == "running" and wait > 0:
                self._pending = progress
                if not self._flush_due:
                    self._flush_due = True
                    _later(wait, self._flush)
                return
            self._pending = None
            self._draw(progress)

    def refresh(self) -> None:
        """Draw the batch's latest snapshot now (after a wait, a click, or for a batch that no longer reports)."""
        with self._lock:
            self._pending = None
            self._draw(self.batch.progress)

    def _flush(self) -> None:
        with self._lock:
            self._flush_due = False
            pending, self._pending = self._pending, None
            if pending is not None and not self._closed:
                self._draw(pending)

    def _watch(self) -> None:
        """Every ``WATCH_INTERVAL`` while the batch is shown running: one that stopped working here without a final
        report (``batch.stop()``, a failed store) is drawn as it ended."""
        with self._lock:
            if self.batch.working and not self._closed and (self.shown is None or self.shown.state == "running"):
                _later(WATCH_INTERVAL, self._watch)
                return
            self._watching = False  # a new running report starts the watch again
            if not self._closed and not self.batch.working:
                self.refresh()

    def _start_watching(self, progress: BatchProgress) -> None:
        if progress.state == "running" and not self._watching:
            self._watching = True
            _later(WATCH_INTERVAL, self._watch)

    def _view(self, p: BatchProgress) -> tuple[Any, ...]:
        percent = f"{p.fraction:.0%}" if p.total else "–"
        counter = muted(f"{p.finished}/{p.total} &middot; {percent}")
        return (max(p.total, 1), p.finished if p.total else 1, bar_style(p), counter, summary_html(p),
                errors_html(p.errors), self._cancelled or p.state != "running", p.failed == 0)

    def _draw(self, progress: BatchProgress) -> None:
        """Show ``progress``, setting only the traits whose value changed; counted only if anything did."""
        self.shown = progress
        view = self._view(progress)
        if view == self._drawn:
            return
        total, value, style, counter, summary, errors, no_cancel, no_retry = view
        self.bar.max = total  # first: a value above the old max would be clipped
        self.bar.value, self.bar.bar_style = value, style
        self.counter.value, self.summary.value, self.errors.value = counter, summary, errors
        self.cancel_button.disabled, self.retry_button.disabled = no_cancel, no_retry
        self._drawn = view
        self._last_draw = time.monotonic()
        self.redraws += 1
        if progress.state == "running":
            self._ended = False
        elif not self._ended:
            self._end()

    def show_in(self, display_handle: Any) -> None:
        """Remember the output that shows this view; once the batch has ended, the output's plain text (what a
        notebook keeps for front ends without widgets) is brought up to date with the final summary."""
        with self._lock:
            self.display_handle = display_handle
            if self.shown is not None and self.shown.state != "running":
                self._end()

    def _end(self) -> None:
        self._ended = True
        if self._retried and self.shown is not None:  # the note said "Retrying…": say how that went
            failed = self.shown.failed
            self.show_note(f"Retried {self._retried} failed item{'s' if self._retried != 1 else ''}: "
                           + (f"{failed} failed again (batch.results() says why)." if failed else "all done."))
            self._retried = 0
        if self.display_handle is not None:
            publish(self.display_handle.update, self)

    def show_note(self, text: str) -> None:
        """A sentence under the buttons (re-attached, cancelled, or why a click did nothing); escaped."""
        self.note.value = muted(html.escape(text), small=True) if text else ""

    # -- buttons ------------------------------------------------------------------------------------------------
    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        try:
            count = self.batch.cancel()
        except AgentNBError as exc:
            self.cancel_button.disabled = False
            self.show_note(f"Could not cancel the batch: {exc}")
            return
        with self._lock:
            self._cancelled = True
        self.show_note(f"Cancelled the batch: {count} item{'s' if count != 1 else ''} not started yet will not be "
                       "sent, and the runs in flight are being cancelled at the service.")
        self.refresh()

    def _retry(self) -> None:
        self.retry_button.disabled = True
        try:
            count = self.batch.retry_failed()
            with self._lock:  # before the batch can end again, so that its end says how the retry went
                self._retried = count
                self.show_note(f"Retrying {count} failed item{'s' if count != 1 else ''}." if count else
                               "No items had failed: there was nothing to retry.")
            if count and not self.batch.working:  # a batch that had ended is worked here again
                self.batch.start()
        except AgentNBError as exc:
            self.show_note(f"Could not retry the failed items: {exc}")
            return
        self.refresh()

    # -- lifetime and fallbacks ---------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending = None
        super().close()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(super()._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = f"batch {self.batch.name}: {self.batch.progress.summary()}"
        return bundle


def _later(delay: float, callback: Any) -> None:
    """Call ``callback`` in ``delay`` seconds on agent-nb's loop thread (no thread of its own per view)."""
    loop = BackgroundLoop.get().loop
    loop.call_soon_threadsafe(loop.call_later, max(0.0, delay), callback)


def batch_bundle(batch: Batch) -> dict[str, Any]:
    """IPython's mimebundle formatter for a :class:`Batch`: its live view (and its summary line as plain text)."""
    return BatchWidget.for_batch(batch)._repr_mimebundle_()
