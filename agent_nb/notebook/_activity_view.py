"""The agent's activity above the answer: the current step, a block per step (frozen once settled), approvals.

Each output item has its own HTML widget, set only when the item changes and never again once it is settled, so a
redraw costs what the steps that changed cost, however many came before. Approval requests show the call and its
arguments with Approve / Reject buttons that answer through the run's handle.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ._style import muted
from ._timeline import block_html, block_signature, call_results, current_step, is_settled

__all__ = ["ActivityView"]

#: Called with a request id, whether it is approved, and the reason given for a refusal.
Answer = Callable[[str, bool, "str | None"], None]

_NOT_DRAWN = frozenset({"message", "function_call_output", "mcp_approval_response"})


class ActivityView(widgets.VBox):  # type: ignore[misc]
    """The activity of one run."""

    def __init__(self, answer: Answer, **kwargs: Any) -> None:
        self.step_line = widgets.HTML()
        self.step_line.add_class("agent-nb-current-step")
        self.steps = widgets.VBox()
        self.steps.add_class("agent-nb-steps")
        self.approvals = widgets.VBox()
        self.approvals.add_class("agent-nb-approvals")
        super().__init__([self.step_line, self.steps, self.approvals], **kwargs)
        self._answer = answer
        self._blocks: dict[int, tuple[widgets.HTML, tuple[Any, ...] | None, bool]] = {}
        self._request_ids: tuple[str, ...] = ()

    def show(self, items: list[dict[str, Any]], status: str, requests: list[Any], *, live: bool) -> None:
        """Bring the view up to date with the run's items (in the store's form) and its pending requests."""
        step = current_step(items, status) if live or status == "waiting" else ""
        value = f"{muted('now:')} {html.escape(step)}" if step else ""
        if self.step_line.value != value:
            self.step_line.value = value
        results = call_results(items)
        added = []
        last = len(items) - 1
        for index, item in enumerate(items):
            if item.get("type") in _NOT_DRAWN:
                continue
            widget, signature, frozen = self._blocks.get(index, (None, None, False))
            if frozen:
                continue
            result = results.get(item.get("call_id")) if item.get("type") == "function_call" else None
            new_signature = block_signature(item, result)
            if widget is None:
                widget = widgets.HTML()
                added.append(widget)
            if new_signature != signature:
                widget.value = block_html(item, result)
            self._blocks[index] = (widget, new_signature, is_settled(item, index == last, result))
        if added:
            self.steps.children = (*self.steps.children, *added)
        self._show_requests(requests)

    def _show_requests(self, requests: list[Any]) -> None:
        ids = tuple(r.id for r in requests)
        if ids == self._request_ids:
            return
        # The rows first: a refresh from another thread that sees the new ids meanwhile must find them drawn.
        self.approvals.children = tuple(self._request_row(r) for r in requests)
        self._request_ids = ids

    def _request_row(self, request: Any) -> widgets.Widget:
        try:
            arguments = json.dumps(json.loads(request.arguments), indent=2, ensure_ascii=False)
        except ValueError:
            arguments = request.arguments
        where = f" on {html.escape(request.server_label)}" if request.server_label else ""
        text = widgets.HTML(f"<b>Approve this call?</b> <code>{html.escape(request.name)}</code>{where}"
                            f'<pre class="agent-nb-pre">{html.escape(arguments)}</pre>')
        approve = widgets.Button(description="Approve", icon="check", button_style="success",
                                 tooltip=f"Let the agent call {request.name}")
        reason = widgets.Text(placeholder="reason (optional)", layout=widgets.Layout(width="16em"))
        reject = widgets.Button(description="Reject", icon="times", button_style="danger",
                                tooltip="Refuse the call; the agent is told, with the reason")
        buttons = [approve, reject]

        def answer(approved: bool) -> None:
            for button in buttons:
                button.disabled = True
            self._answer(request.id, approved, reason.value.strip() or None)

        approve.on_click(lambda _: answer(True))
        reject.on_click(lambda _: answer(False))
        row = widgets.VBox([text, widgets.HBox([approve, reject, reason])])
        row.add_class("agent-nb-approval")
        row.add_class("agent-nb-live-only")
        return row
