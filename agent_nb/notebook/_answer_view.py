"""The answer as it streams, drawn in pages so that a redraw costs the same for a 1 MB answer as for a 10 KB one.

The text is cut at blank lines outside fenced code (where Markdown blocks end anyway); once the page being written
holds ``PAGE_SIZE`` characters it is rendered one last time and frozen, and a new page starts. A redraw renders and
sends only the page being written.
"""

from __future__ import annotations

import re
from typing import Any

import ipywidgets as widgets

from ._markdown import render_markdown

__all__ = ["AnswerView"]

PAGE_SIZE = 16_000
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


class AnswerView(widgets.VBox):  # type: ignore[misc]
    """Pages of rendered Markdown; :meth:`show` brings them up to date with the run's text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([], **kwargs)
        self.add_class("agent-nb-answer")
        self.sent = 0  # characters of HTML sent to the browser (the benchmark reads it)
        self._reset()

    def _reset(self) -> None:
        self._page = self._new_page()
        self.children: tuple[widgets.Widget, ...] = (self._page,)
        self._page_start = 0  # where the page being written starts in the text
        self._scanned = 0  # how far the text has been scanned for boundaries
        self._boundary = 0  # the last place a page may end
        self._in_fence = False

    @property
    def value(self) -> str:
        """The HTML of every page, as the browser shows it."""
        return "".join(page.value for page in self.children)

    @staticmethod
    def _new_page() -> widgets.HTML:
        page = widgets.HTML()
        page.add_class("agent-nb-text")
        return page

    def _scan(self, text: str) -> None:
        end = text.rfind("\n", self._scanned)
        if end < 0:
            return
        for line in text[self._scanned:end + 1].splitlines(keepends=True):
            if _FENCE.match(line):
                self._in_fence = not self._in_fence
            elif not line.strip() and not self._in_fence:
                self._boundary = self._scanned + len(line)
            self._scanned += len(line)

    def show(self, text: str) -> None:
        """Draw ``text``: freeze full pages, re-render only the page being written."""
        if len(text) < self._page_start:  # the text was replaced by a shorter one (a polled snapshot): start over
            self._reset()
        self._scan(text)
        while self._boundary - self._page_start >= PAGE_SIZE:
            cut = self._boundary
            self._set(self._page, render_markdown(text[self._page_start:cut]))
            self._page = self._new_page()
            self.children = (*self.children, self._page)
            self._page_start = cut
        self._set(self._page, render_markdown(text[self._page_start:]))

    def _set(self, page: widgets.HTML, value: str) -> None:
        if page.value != value:
            page.value = value
            self.sent += len(value)
