"""The live view of a run: status, elapsed time, token, streamed Markdown, Resume and Cancel.

Redraws are throttled: however fast deltas arrive, the text is re-rendered at most ``REDRAWS_PER_SECOND`` times a
second, on agent-nb's loop thread (widget state travels over comms, which is safe from there).
"""

from __future__ import annotations

import html
import time
import weakref
from typing import Any

import ipywidgets as widgets

from ._handle import NotebookRun
from ._markdown import render_markdown

__all__ = ["RunWidget"]

REDRAWS_PER_SECOND = 4
_SPINNER = "◐◓◑◒"
COLOURS = {
    "starting": "#6b7280", "queued": "#6b7280", "in_progress": "#2563eb", "reconnecting": "#d97706",
    "completed": "#16a34a", "failed": "#dc2626", "cancelled": "#6b7280", "incomplete": "#d97706",
    "lost": "#dc2626", "error": "#dc2626",
}
LABELS = {
    "starting": "starting", "queued": "queued", "in_progress": "in progress", "reconnecting": "reconnecting…",
    "completed": "completed", "failed": "failed", "cancelled": "cancelled", "incomplete": "incomplete",
    "lost": "connection lost", "error": "error",
}

_widgets: weakref.WeakKeyDictionary[NotebookRun, RunWidget] = weakref.WeakKeyDictionary()


class RunWidget(widgets.VBox):  # type: ignore[misc]
    """A widget showing one :class:`NotebookRun` as it goes."""

    def __init__(self, handle: NotebookRun, **kwargs: Any) -> None:
        self.handle = handle
        self.status_line = widgets.HTML()
        self.elapsed_label = widgets.HTML()
        self.meta = widgets.HTML()
        self.token_box = widgets.Text(description="Token", placeholder="(no token yet)",
                                      layout=widgets.Layout(width="100%"),
                                      tooltip="Copy this to resume the run anywhere: %agent resume TOKEN")
        self.body = widgets.HTML(layout=widgets.Layout(max_height="40em", overflow="auto"))
        self.message = widgets.HTML()
        self.resume_button = widgets.Button(description="Resume", icon="play", disabled=True,
                                            tooltip="Continue from the saved token")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="Ask the service to cancel this run")
        self.resume_button.on_click(lambda _: self._resume())
        self.cancel_button.on_click(lambda _: self._cancel())
        header = widgets.HBox([self.status_line, self.elapsed_label, self.resume_button, self.cancel_button])
        super().__init__([header, self.meta, self.token_box, self.message, self.body], **kwargs)
        self.add_class("agent-nb-run")
        self.redraws = 0
        self._rendered_length = -1
        self._dirty = True
        self._spin = 0
        self._last_draw = 0.0
        self._ticking = False
        self.display_handle: Any = None
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
    def _on_change(self, handle: NotebookRun, change: str) -> None:
        if change == "text":
            self._dirty = True  # drawn by the next tick, not now: deltas can come thousands a second
            return
        self.refresh(force=True)
        if change == "done" and self.display_handle is not None:
            self.display_handle.update(self)  # the saved output gets the final text as its fallback
        if not self._ticking and not handle.finished and change != "done":
            handle.loop.call(self._tick)

    def _tick(self) -> None:
        """Runs on the loop thread while the run is live: redraws at most REDRAWS_PER_SECOND times a second."""
        self._ticking = True
        self._spin += 1
        self.refresh()
        if self.handle.running:
            self.handle.loop.loop.call_later(1 / REDRAWS_PER_SECOND, self._tick)
        else:
            self._ticking = False
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Bring every part of the view up to date (the text only if it changed)."""
        handle = self.handle
        now = time.monotonic()
        phase = handle.phase
        colour = COLOURS.get(phase, "#6b7280")
        live = handle.running and phase not in ("completed", "failed", "cancelled", "incomplete")
        spinner = f"{_SPINNER[self._spin % len(_SPINNER)]} " if live else ""
        self.status_line.value = (f'<b style="color:{colour}">{spinner}{html.escape(LABELS.get(phase, phase))}</b>'
                                  + (f" &middot; {html.escape(handle.name)}" if handle.name else ""))
        self.elapsed_label.value = f'<span style="color:#6b7280">{handle.elapsed:.1f} s</span>'
        parts = [f"response <code>{html.escape(handle.response_id)}</code>" if handle.response_id else "",
                 f"run <code>{html.escape(handle.run_id)}</code>" if handle.run_id else ""]
        self.meta.value = '<span style="color:#6b7280;font-size:smaller">' + " &middot; ".join(p for p in parts if p) \
            + "</span>"
        token = handle.token
        self.token_box.value = str(token) if token is not None else ""
        note = handle.message or handle.notice
        self.message.value = f'<span style="color:{colour}">{html.escape(note)}</span>' if note else ""
        self.resume_button.disabled = not handle.can_resume
        self.cancel_button.disabled = not handle.can_cancel
        text = handle.text
        if (self._dirty or force) and len(text) != self._rendered_length and \
                (force or now - self._last_draw >= 1 / REDRAWS_PER_SECOND):
            self.body.value = render_markdown(text)
            self._rendered_length = len(text)
            self._last_draw = now
            self.redraws += 1
            self._dirty = False

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
        handle = self.handle
        label = LABELS.get(handle.phase, handle.phase)
        title = f"agent-nb run{f' {handle.name!r}' if handle.name else ''}: {label}"
        note = handle.message or ""
        bundle["text/plain"] = "\n".join(p for p in (title, note, handle.text) if p)
        bundle["text/markdown"] = "\n\n".join(p for p in (f"**{_md_escape(title)}**",
                                                          _md_escape(note) if note else "",
                                                          html.escape(handle.text, quote=False)) if p)
        bundle["text/html"] = (f'<div class="agent-nb-run"><p><b>{html.escape(title)}</b></p>'
                               + (f"<p>{html.escape(note)}</p>" if note else "")
                               + render_markdown(handle.text) + "</div>")
        return bundle


def _md_escape(text: str) -> str:
    return html.escape(text).replace("*", r"\*").replace("_", r"\_")
