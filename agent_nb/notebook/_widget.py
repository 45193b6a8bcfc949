"""The live view of a run: status, elapsed time, token, streamed Markdown, Resume and Cancel.

Redraws are throttled: however fast deltas arrive, the text is re-rendered at most ``REDRAWS_PER_SECOND`` times a
second, on agent-nb's loop thread (widget state travels over comms, which is safe from there). The run's saved view
(:class:`~agent_nb.notebook._card.RunCard`, the output above this one) is brought up to date every
``SAVED_VIEW_INTERVAL`` seconds and at every change of status; when the run ends it takes this view's place, so
what the notebook keeps is static and honest.
"""

from __future__ import annotations

import html
import time
import weakref
from typing import Any

import ipywidgets as widgets

from ._activity_view import ActivityView
from ._answer_view import AnswerView
from ._card import RunCard, reconnected
from ._handle import NotebookRun
from ._liveness import Liveness
from ._notify import Notifier
from ._publish import publish
from ._style import label, muted, status_html
from ._timeline import citations_html

__all__ = ["RunWidget"]

REDRAWS_PER_SECOND = 4
SAVED_VIEW_INTERVAL = 5.0
_SPINNER = "◐◓◑◒"

_widgets: weakref.WeakKeyDictionary[NotebookRun, RunWidget] = weakref.WeakKeyDictionary()


class RunWidget(widgets.VBox):  # type: ignore[misc]
    """A widget showing one :class:`NotebookRun` as it goes."""

    def __init__(self, handle: NotebookRun, **kwargs: Any) -> None:
        self.handle = handle
        self.status_line = widgets.HTML()
        self.elapsed_label = widgets.HTML()
        self.elapsed_label.add_class("agent-nb-live-only")
        self.meta = widgets.HTML()
        self.token_box = widgets.Text(description="Token", placeholder="(no token yet)",
                                      layout=widgets.Layout(width="100%"),
                                      tooltip="Copy this to resume the run anywhere: %agent resume TOKEN")
        self.token_note = widgets.HTML()
        self.activity = ActivityView(handle.answer)
        self.body = AnswerView(layout=widgets.Layout(max_height="40em", overflow="auto"))
        self.sources = widgets.HTML()
        self.message = widgets.HTML()
        self.message.add_class("agent-nb-notes")
        self.stale_note = widgets.HTML()
        self.stale_note.add_class("agent-nb-stale-note")
        self.resume_button = widgets.Button(description="Resume", icon="play", disabled=True,
                                            tooltip="Continue from the saved token")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="Ask the service to cancel this run")
        for button in (self.resume_button, self.cancel_button):
            button.add_class("agent-nb-live-only")
        self.resume_button.on_click(lambda _: self._resume())
        self.cancel_button.on_click(lambda _: self._cancel())
        self.liveness = Liveness(handle.key)
        header = widgets.HBox([self.status_line, self.elapsed_label, self.resume_button, self.cancel_button])
        super().__init__([header, self.stale_note, self.meta, self.token_box, self.token_note, self.message,
                          self.activity, self.body, self.sources, self.liveness], **kwargs)
        self.add_class("agent-nb-run")
        self.redraws = 0
        self._rendered_length = -1
        self._drawn_items: tuple[int, int] | None = None
        self._dirty = True
        self._spin = 0
        self._last_draw = 0.0
        self._ticking = False
        self.display_handle: Any = None
        self.saved_handle: Any = None
        self._saved_at = 0.0
        self._saved_phase: str | None = None
        self._ended = False
        self.notifier: Notifier | None = None
        self._announced: str | None = None
        handle.add_listener(self._on_change)
        self.refresh(force=True)
        if not handle.finished:
            handle.loop.call(self._tick)

    @classmethod
    def for_run(cls, handle: NotebookRun) -> RunWidget:
        """The widget of ``handle`` (one per run, so displaying it twice shows the same live view)."""
        widget = _widgets.get(handle)
        if widget is None:
            widget = _widgets[handle] = cls(handle)
        return widget

    # -- updates ----------------------------------------------------------------------------------------------
    def enable_notifications(self) -> None:
        """Tell the user when the run ends or waits for them, even in another tab (``%%agent --notify``)."""
        if self.notifier is None:
            self.notifier = Notifier()
            self.children = (*tuple(self.children), self.notifier)  # type: ignore[has-type]
        self._announce()  # a run that is over (or waiting) already says so at once

    def _announce(self) -> None:
        handle = self.handle
        if self.notifier is None or handle.phase == self._announced:
            return
        if handle.finished or handle.phase == "waiting":
            self._announced = handle.phase
            what = "is waiting for your approval" if handle.phase == "waiting" else label(handle.phase)
            self.notifier.send(f"{handle.name or 'agent-nb run'} {what}", handle.message or handle.text[:200] or
                               label(handle.phase), handle.key)

    def _on_change(self, handle: NotebookRun, change: str) -> None:
        if change in ("text", "items", "tools"):
            self._dirty = True  # drawn by the next tick, not now: events can come thousands a second
            return
        self._announce()
        self.refresh(force=True)
        if change == "done" and handle.finished:
            self.end()
        if not self._ticking and not handle.finished and change != "done":
            handle.loop.call(self._tick)

    def _tick(self) -> None:
        """Runs on the loop thread while the run may be live: redraws at most REDRAWS_PER_SECOND times a second.

        It goes on while the connection is lost too: the run may still be going on the service, and its elapsed
        time with it.
        """
        self._ticking = True
        self._spin += 1
        self.refresh()
        if not self.handle.finished:
            rate = REDRAWS_PER_SECOND if self.handle.running else 1
            self.handle.loop.loop.call_later(1 / rate, self._tick)
        else:
            self._ticking = False
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Bring every part of the view up to date (the text only if it changed), and the saved view now and then."""
        handle = self.handle
        now = time.monotonic()
        phase = handle.phase
        live = handle.running and not handle.finished
        self.status_line.value = status_html(phase, handle.name, spinner=_SPINNER[self._spin % 4] if live else "")
        self.elapsed_label.value = muted(f"{handle.elapsed:.1f} s")
        parts = [f"response <code>{html.escape(handle.response_id)}</code>" if handle.response_id else "",
                 f"run <code>{html.escape(handle.run_id)}</code>" if handle.run_id else "",
                 reconnected(handle.reconnects)]
        self.meta.value = muted(" &middot; ".join(p for p in parts if p), small=True)
        token = handle.token or (handle.last_token if handle.finished else None)
        self.token_box.value = str(token) if token is not None else ""
        self.token_note.value = muted("The run has ended; this token replays its stream.", small=True) \
            if handle.finished and token is not None else muted(
                "The run waits for your approval below: it has no token until it goes on.", small=True) \
            if phase == "waiting" else ""
        notes = [n for n in (handle.message or handle.notice, handle.store_warning) if n]
        self.message.value = "".join(f"<div>{html.escape(n)}</div>" for n in notes)
        target = handle.run_id or (str(handle.last_token) if handle.last_token else "")
        self.stale_note.value = (f"<b>This view stopped updating:</b> the kernel that followed this run has "
                                 f"stopped. It was {html.escape(label(phase))} then. Re-attach with "
                                 f"<code>%agent resume {html.escape(target)}</code>.") if target else ""
        self.resume_button.disabled = not handle.can_resume
        self.cancel_button.disabled = not handle.can_cancel
        if (self._dirty or force) and (force or now - self._last_draw >= 1 / REDRAWS_PER_SECOND):
            self._draw_run(live)
            self._last_draw = now
            self._dirty = False
        if self.saved_handle is not None and not self._ended and (
                phase != self._saved_phase or now - self._saved_at >= SAVED_VIEW_INTERVAL):
            self._saved_phase, self._saved_at = phase, now
            publish(self.saved_handle.update, RunCard(handle))

    def _draw_run(self, live: bool) -> None:
        """The activity, the answer and its sources: only the parts that changed since the last draw."""
        handle = self.handle
        items = handle.items
        self.activity.show(items, handle.phase, handle.requests, live=live)
        text = handle.text
        if len(text) != self._rendered_length:
            self.body.show(text)
            self._rendered_length = len(text)
            self.redraws += 1
        annotations = sum(len(p.get("annotations") or []) for i in items if i.get("type") == "message"
                          for p in i.get("content") or [] if isinstance(p, dict))
        if (len(items), annotations) != self._drawn_items:
            self._drawn_items = (len(items), annotations)
            self.sources.value = citations_html(items)

    def end(self) -> None:
        """The run has ended: the saved view, final now, takes the live view's place in the notebook."""
        if self._ended or self.display_handle is None:
            return
        self._ended = True
        # The twin first: once the live view is gone its twin is no longer hidden, and the page would show the run
        # twice until the twin was cleared.
        if self.saved_handle is not None:
            publish(self.saved_handle.update, {"text/html": ""}, raw=True)
        publish(self.display_handle.update, RunCard(self.handle))

    # -- buttons ------------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        self.handle.resume()
        self.refresh(force=True)
        if not self._ticking:
            self.handle.loop.call(self._tick)

    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        self.handle.loop.submit(self.handle.cancel_async())

    # -- fallbacks ----------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(super()._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = f"agent-nb live view of {self.handle!r} (it works while its kernel runs)"
        return bundle

