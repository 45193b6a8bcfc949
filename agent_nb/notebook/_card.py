"""The saved view of a run: static HTML that says what was last known and how to re-attach.

The live widget only works while its kernel runs. Next to it, every ``%%agent`` output has this card, kept up to
date at a low rate and hidden while the live view is there; once the run has ended it replaces the live view. So a
notebook reopened after its kernel is gone (or viewed on GitHub) shows the run as it last stood, never a spinner
that pretends: a finished run with its text and last token, or an unfinished one with ``%agent resume RUN_ID``.
"""

from __future__ import annotations

import html
from typing import Any

from ._handle import NotebookRun
from ._markdown import render_markdown
from ._style import label, muted, status_html
from ._timeline import block_html, call_results, citations_html

__all__ = ["RunCard"]


class RunCard:
    """The static view of ``handle`` as it stands now (displayed with ``display(RunCard(handle))``)."""

    def __init__(self, handle: NotebookRun) -> None:
        self.handle = handle

    def facts(self) -> list[str]:
        """The lines under the status: ids, reconnections, the token and how to get the run back."""
        h = self.handle
        ids = " &middot; ".join(part for part in (
            f"response <code>{html.escape(h.response_id)}</code>" if h.response_id else "",
            f"run <code>{html.escape(h.run_id)}</code>" if h.run_id else "",
            reconnected(h.reconnects)) if part)
        lines = [muted(ids, small=True)] if ids else []
        token = h.last_token
        target = h.run_id or (str(token) if token else None)
        if h.finished:
            if token is not None:
                lines.append(muted(f"last token <code>{html.escape(str(token))}</code> (the run has ended; it "
                                   "replays the stream)", small=True))
        elif target is not None:
            lines.append(muted("If this view is not updating, the kernel that followed this run has stopped: "
                               f"re-attach with <code>%agent resume {html.escape(target)}</code>.", small=True))
        return lines

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        h = self.handle
        note = h.message or h.notice
        when = f"{h.elapsed:.1f} s" if h.finished else f"as last seen, {h.elapsed:.1f} s after it started"
        parts = [f"<p>{status_html(h.phase, h.name)} {muted(when)}</p>",
                 *(f"<div>{line}</div>" for line in self.facts()),
                 f"<p>{html.escape(note)}</p>" if note else "",
                 f"<p>{html.escape(h.store_warning)}</p>" if h.store_warning else "",
                 *_steps(h.items), render_markdown(h.text), citations_html(h.items)]
        body = "".join(part for part in parts if part)
        title = f"agent-nb run{f' {h.name!r}' if h.name else ''}: {label(h.phase)}" + \
            ("" if h.finished else " (as last seen)")
        resume = h.run_id or (str(h.last_token) if h.last_token else "")
        plain = [title, note or "", "" if h.finished or not resume else f"Re-attach with %agent resume {resume}",
                 h.text]
        return {
            "text/html": f'<div class="agent-nb-saved" data-agent-nb-run="{html.escape(h.key)}">{body}</div>',
            "text/plain": "\n".join(line for line in plain if line),
        }


def _steps(items: list[dict[str, Any]]) -> list[str]:
    results = call_results(items)
    return [block_html(i, results.get(i.get("call_id"))) for i in items]


def reconnected(times: int) -> str:
    if times <= 0:
        return ""
    return f"reconnected {times} time{'s' if times != 1 else ''}"
