"""What an agent run is doing, as HTML: the current step in one line, one block per output item, and citations.

Everything from the model is untrusted (search queries, page URLs and titles, code, tool arguments and results):
it is escaped, never executed, and links are plain ``http(s)`` anchors that open in a new tab without a referrer.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ._markdown import render_markdown
from ._style import muted

__all__ = ["block_html", "block_signature", "call_results", "citations_html", "current_step", "is_settled"]

_MAX_SHOWN = 4_000  # characters of arguments, code or output shown in a block (the rest: "… N more")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + f"\n… {len(text) - _MAX_SHOWN:,} more characters"


def _site(url: str) -> str:
    parts = urlsplit(url)
    return _short(parts.netloc + parts.path, 48) if parts.netloc else _short(url, 48)


def _arguments_line(arguments: str) -> str:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return _short(arguments or "", 40)
    if isinstance(value, dict):
        return ", ".join(_short(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v, 24)
                         for v in value.values())
    return _short(json.dumps(value, ensure_ascii=False), 40)


def _action_line(action: Any) -> str:
    if not isinstance(action, dict):
        return "searching the web"
    kind = action.get("type")
    if kind == "search":
        return f"searching: {_short(str(action.get('query') or ''))!r}"
    if kind == "open_page":
        return f"reading {_site(str(action.get('url') or ''))}"
    if kind == "find_in_page":
        return f"finding {_short(str(action.get('pattern') or ''), 30)!r} in {_site(str(action.get('url') or ''))}"
    return "searching the web"


def current_step(items: list[dict[str, Any]], status: str) -> str:
    """The run's current step in one line, e.g. ``searching: 'Q4 launch pricing'`` or ``calling get_price(MSFT)``."""
    if status == "waiting":
        pending = [i for i in items if i.get("type") in ("function_call", "mcp_approval_request")]
        name = pending[-1].get("name") if pending else "a tool"
        return f"waiting for your approval to call {name}"
    if not items:
        return "thinking" if status in ("queued", "in_progress") else ""
    item = items[-1]
    kind = item.get("type")
    if kind == "reasoning":
        return "thinking"
    if kind == "web_search_call":
        return _action_line(item.get("action"))
    if kind == "code_interpreter_call":
        return "running code"
    if kind in ("function_call", "mcp_call"):
        return f"calling {item.get('name')}({_arguments_line(str(item.get('arguments') or ''))})"
    if kind == "function_call_output":
        return "reading the tool's result"
    if kind == "message":
        return "writing the answer"
    return str(kind or "working").replace("_", " ")


def call_results(items: list[dict[str, Any]]) -> dict[Any, str]:
    """Each function call's output, by call id, from the ``function_call_output`` items of the run."""
    return {i.get("call_id"): str(i.get("output")) for i in items if i.get("type") == "function_call_output"}


def is_settled(item: dict[str, Any], last: bool, result: str | None) -> bool:
    """Whether an item's block will not change any more, so it is drawn once and frozen."""
    kind = item.get("type")
    if kind == "function_call":
        return result is not None  # its result comes later
    if kind == "reasoning":
        return not last
    return item.get("status") in ("completed", "incomplete", "failed") or (not last and item.get("status") is None)


def block_signature(item: dict[str, Any], result: str | None) -> tuple[Any, ...]:
    """Changes whenever the item's block would look different."""
    summary = item.get("summary") or []
    return (item.get("type"), item.get("status"), len(str(item.get("arguments") or "")), len(str(item.get("code")
            or "")), sum(len(s.get("text", "")) for s in summary if isinstance(s, dict)), result is None,
            len(item.get("outputs") or []))


def block_html(item: dict[str, Any], result: str | None = None) -> str:
    """One item as a block: a line saying what happened, details collapsed under it. ``result``: a call's output."""
    kind = item.get("type")
    if kind == "reasoning":
        text = "\n\n".join(s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict))
        return _details("Reasoning", render_markdown(text) if text else muted("(no summary)"), open_=False)
    if kind == "web_search_call":
        action = item.get("action") or {}
        line = html.escape(_action_line(action))
        url = action.get("url") if isinstance(action, dict) else None
        link = f" {_link(str(url), _site(str(url)))}" if isinstance(url, str) and url else ""
        status = "" if item.get("status") == "completed" else muted(f" ({html.escape(str(item.get('status')))})")
        return f'<div class="agent-nb-step">• {line}{link}{status}</div>'
    if kind == "code_interpreter_call":
        logs = "".join(o.get("logs", "") for o in item.get("outputs") or [] if isinstance(o, dict))
        body = _pre(str(item.get("code") or "")) + (f"<div>{muted('output')}</div>{_pre(logs)}" if logs else "")
        return _details("Code" + ("" if item.get("status") == "completed" else " (running)"), body)
    if kind in ("function_call", "mcp_call"):
        name = html.escape(str(item.get("name")))
        where = f" on {html.escape(str(item.get('server_label')))}" if item.get("server_label") else ""
        output = result if kind == "function_call" else item.get("output")
        body = f"<div>{muted('arguments')}</div>{_pre(_pretty(str(item.get('arguments') or '')))}"
        body += f"<div>{muted('result')}</div>{_pre(str(output))}" if output is not None else \
            f"<div>{muted('waiting for the result…')}</div>"
        shown = html.escape(_arguments_line(str(item.get("arguments") or "")))
        return _details(f"Tool call: {name}({shown}){where}", body)
    if kind == "mcp_approval_request":
        return (f'<div class="agent-nb-step">• approval asked for {html.escape(str(item.get("name")))} on '
                f'{html.escape(str(item.get("server_label")))}</div>')
    return ""  # messages are the answer; outputs show under their call; unknown items are kept, not drawn


def citations_html(items: Iterable[dict[str, Any]]) -> str:
    """The answer's sources, numbered, as safe links."""
    seen: list[tuple[str, str]] = []
    for item in items:
        if item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            for a in part.get("annotations") or [] if isinstance(part, dict) else []:
                if isinstance(a, dict) and a.get("type") == "url_citation":
                    pair = (str(a.get("url") or ""), str(a.get("title") or a.get("url") or ""))
                    if pair not in seen:
                        seen.append(pair)
    if not seen:
        return ""
    entries = "".join(f"<li>{_link(url, title)} {muted(html.escape(_site(url)), small=True)}</li>"
                      for url, title in seen)
    return f'<div class="agent-nb-sources">{muted("Sources", small=True)}<ol>{entries}</ol></div>'


def _details(summary: str, body: str, *, open_: bool = False) -> str:
    return (f'<details class="agent-nb-step"{" open" if open_ else ""}><summary>{summary}</summary>'
            f"{body}</details>")


def _pre(text: str) -> str:
    return f'<pre class="agent-nb-pre">{html.escape(_clip(text))}</pre>'


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def _link(url: str, title: str) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        return html.escape(title)  # javascript:, data: and the like are shown, never linked
    return (f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer nofollow">'
            f"{html.escape(_short(title, 80))}</a>")
