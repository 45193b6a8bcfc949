"""Markdown for untrusted model output: raw HTML is escaped, dangerous links are dropped, nothing runs."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

__all__ = ["render_markdown"]


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    # "html": False makes raw HTML (<script>, <img onerror=…>) text; markdown-it's validateLink drops
    # javascript:, vbscript:, file: and data: URLs (data: images excepted) from links and images.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str) -> str:
    """HTML for ``text`` rendered as Markdown, safe to put in a page."""
    try:
        return str(_parser().render(text))
    except Exception:  # a renderer bug must not lose the text: show it escaped instead
        return f"<pre>{html.escape(text)}</pre>"
