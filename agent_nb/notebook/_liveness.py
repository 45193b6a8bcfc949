"""The live view's link to its kernel, seen from the page: it hides a run's saved view while the live one works,
and says so plainly when the kernel behind a run's or a batch's view has gone.

The standard widgets cannot notice that their kernel went away: after a restart they stay as they were, a
spinning "in progress" with a Cancel button that does nothing. This small anywidget (front-end code that ships with
agent-nb, never model output) listens for its comm closing; the view then marks itself stale, which hides what only
a live kernel can do (spinner, buttons, the clock) and shows how to re-attach.
"""

from __future__ import annotations

import anywidget
import traitlets

__all__ = ["Liveness"]

_ESM = """
export default {
  render({ model, el }) {
    const key = model.get("run_key");
    const style = document.createElement("style");
    if (key) {
      // While this live view is on the page, its saved twin (the output below it) stays out of sight.
      const saved = `.agent-nb-saved[data-agent-nb-run="${CSS.escape(key)}"]`;
      style.textContent = `.jp-OutputArea-child:has(${saved}), ${saved} { display: none !important; }`;
      document.head.appendChild(style);
    }
    // (The view is not in the page yet while it renders: find the run's or batch's widget around it when needed.)
    const stale = () => {
      const root = el.closest(".agent-nb-run, .agent-nb-batch");
      if (root) root.classList.add("agent-nb-stale");
    };
    // The comm only ever goes from live to dead once the view exists: the kernel restarted or died.
    model.on("comm_live_update", stale);
    return () => {
      model.off("comm_live_update", stale);
      style.remove();
    };
  },
};
"""

_CSS = """
.agent-nb-run .agent-nb-stale-note, .agent-nb-batch .agent-nb-stale-note { display: none; }
.agent-nb-run.agent-nb-stale .agent-nb-stale-note, .agent-nb-batch.agent-nb-stale .agent-nb-stale-note {
  display: block;
}
.agent-nb-run.agent-nb-stale .agent-nb-live-only, .agent-nb-batch.agent-nb-stale .agent-nb-live-only {
  display: none !important;
}
.agent-nb-run.agent-nb-stale, .agent-nb-batch.agent-nb-stale { opacity: 0.85; }
/* ipywidgets marks each dead view with a broken-link icon; the note above says what happened, once. */
.agent-nb-stale.jupyter-widgets-disconnected::before,
.agent-nb-stale .jupyter-widgets-disconnected::before { display: none !important; }
.agent-nb-liveness { display: none; }
/* Widget HTML is laid out for one-line labels; the reply and the notes are paragraphs. */
.agent-nb-run .agent-nb-text .widget-html-content, .agent-nb-run .agent-nb-notes .widget-html-content {
  line-height: var(--jp-content-line-height, 1.6);
}
.agent-nb-run .agent-nb-step { margin: 1px 0; color: var(--jp-ui-font-color1, inherit); }
.agent-nb-run .agent-nb-step summary { cursor: pointer; }
.agent-nb-run .agent-nb-pre, .agent-nb-saved .agent-nb-pre {
  max-height: 14em; overflow: auto; font-size: var(--jp-code-font-size, 13px); margin: 2px 0 4px 1.5em;
  background: var(--jp-layout-color2, #f5f5f5); color: var(--jp-content-font-color1, inherit); padding: 4px;
  white-space: pre-wrap;
}
.agent-nb-run .agent-nb-approval { border-left: 3px solid var(--jp-warn-color1, #f57c00); padding-left: 8px; }
.agent-nb-run .agent-nb-current-step .widget-html-content { font-style: italic; }
"""


class Liveness(anywidget.AnyWidget):  # type: ignore[misc]
    """An invisible child of a run's or a batch's widget; ``run_key`` names a run's saved view in the page (a batch
    has none: ``""``)."""

    _esm = _ESM
    _css = _CSS
    run_key = traitlets.Unicode("", help="The key of the run whose saved view this live view stands for, if any.").tag(
        sync=True)

    def __init__(self, run_key: str = "") -> None:
        super().__init__(run_key=run_key)
        self.add_class("agent-nb-liveness")
