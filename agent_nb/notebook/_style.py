"""How a run's phase looks: its label and its colour, taken from JupyterLab's theme so both themes read well.

Colours are JupyterLab's CSS variables (``--jp-…``) with fallbacks for front ends that lack them (classic
Notebook, VS Code, nbviewer), so "in progress" is readable on the dark theme's near-black as on white.
"""

from __future__ import annotations

import html

__all__ = ["FINISHED", "LABELS", "colour", "label", "status_html"]

_NEUTRAL = "var(--jp-ui-font-color2, #616161)"
_BRAND = "var(--jp-brand-color1, #1976d2)"
_WARN = "var(--jp-warn-color1, #f57c00)"
_GOOD = "var(--jp-success-color1, #388e3c)"
_BAD = "var(--jp-error-color1, #d32f2f)"

COLOURS = {
    "starting": _NEUTRAL, "queued": _NEUTRAL, "in_progress": _BRAND, "reconnecting": _WARN, "completed": _GOOD,
    "failed": _BAD, "cancelled": _NEUTRAL, "incomplete": _WARN, "disconnected": _BAD, "lost": _BAD, "error": _BAD,
    "waiting": _WARN,
}
LABELS = {
    "starting": "starting", "queued": "queued", "in_progress": "in progress", "reconnecting": "reconnecting…",
    "completed": "completed", "failed": "failed", "cancelled": "cancelled", "incomplete": "incomplete",
    "disconnected": "connection lost", "lost": "lost", "error": "error", "waiting": "waiting for approval",
}
#: Phases after which nothing more happens to the run from this kernel: the service ended it, no longer has it, or
#: it never started.
FINISHED = frozenset({"completed", "failed", "cancelled", "incomplete", "lost", "error"})


def colour(phase: str) -> str:
    return COLOURS.get(phase, _NEUTRAL)


def label(phase: str) -> str:
    return LABELS.get(phase, phase)


def status_html(phase: str, name: str | None, *, spinner: str = "") -> str:
    """The status line: the phase in its colour (with a spinner while live) and the run's name."""
    spin = f'<span class="agent-nb-live-only">{spinner} </span>' if spinner else ""
    return (f'<b style="color:{colour(phase)}">{spin}{html.escape(label(phase))}</b>'
            + (f" &middot; {html.escape(name)}" if name else ""))


def muted(text_html: str, *, small: bool = False) -> str:
    size = ";font-size:smaller" if small else ""
    return f'<span style="color:{_NEUTRAL}{size}">{text_html}</span>'
