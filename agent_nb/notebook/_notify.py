"""Telling the user a run has ended, even in another tab or window (``%%agent --notify``).

A small anywidget (front-end code that ships with agent-nb): when the run it belongs to ends while the page is not
being looked at, it shows a desktop notification (asking the browser's permission once, when the first run that
wants one starts) and puts a mark in the tab's title, which goes away when the user comes back to the page.
"""

from __future__ import annotations

import anywidget
import traitlets

__all__ = ["Notifier"]

_ESM = """
const state = window.__agentNbNotify || (window.__agentNbNotify = { title: null });

function restore() {
  if (state.title !== null && document.visibilityState === "visible" && document.hasFocus()) {
    document.title = state.title;
    state.title = null;
  }
}
if (!state.listening) {
  state.listening = true;
  document.addEventListener("visibilitychange", restore);
  window.addEventListener("focus", () => setTimeout(restore, 0));
}

function announce(notice) {
  const away = document.visibilityState !== "visible" || !document.hasFocus();
  if (!away) return;
  if (state.title === null) state.title = document.title;
  document.title = `✔ ${notice.title} · ${state.title}`;
  if ("Notification" in window && Notification.permission === "granted") {
    const shown = new Notification(notice.title, { body: notice.body, tag: notice.tag });
    shown.onclick = () => { window.focus(); shown.close(); };
  }
}

export default {
  render({ model }) {
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});  // asked once: the browser remembers the answer
    }
    const changed = () => {
      const notice = model.get("notice");
      if (notice && notice.title) announce(notice);
    };
    model.on("change:notice", changed);
    return () => model.off("change:notice", changed);
  },
};
"""


class Notifier(anywidget.AnyWidget):  # type: ignore[misc]
    """An invisible child of a run widget; :meth:`send` announces the run's end to the page."""

    _esm = _ESM
    notice = traitlets.Dict({}, help="The last announcement: title, body and a tag naming the run.").tag(sync=True)

    def __init__(self) -> None:
        super().__init__()
        self.add_class("agent-nb-liveness")  # hidden like the liveness probe

    def send(self, title: str, body: str, tag: str) -> None:
        """Announce (the text is the notification's, plain: the browser shows it as text, never as HTML)."""
        self.notice = {"title": title[:120], "body": body[:200], "tag": tag}
