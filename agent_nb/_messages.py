"""What a new run asks for: its input items from the messages given, and how it is to be followed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import ConfigurationError

__all__ = ["follow_mode", "request_input"]


def follow_mode(notify: Any, stream: bool, background: bool, recorded: bool, tools: bool) -> str:
    """How a new run is followed: streamed, polled, or (``notify="webhook"``) waited for in the run store."""
    if notify is None:
        return "stream" if stream or not background else "poll"
    if notify != "webhook":
        raise ConfigurationError(f"notify={notify!r} is not known; the only notification is 'webhook'.")
    if not recorded:
        raise ConfigurationError("notify='webhook' needs a background run and a run store: the webhook receiver "
                                 "records the outcome there, and the run waits for it there.")
    if tools:
        raise ConfigurationError("notify='webhook' does not follow runs with function tools or MCP servers: their "
                                 "rounds are answered by the run itself. Stream or poll them instead.")
    return "webhook"


def request_input(messages: Any) -> tuple[str, Any]:
    """The prompt text (for the store) and the request's ``input`` for the given messages."""
    if messages is None:
        return "", []
    if isinstance(messages, str):
        return messages, messages
    if isinstance(messages, Iterable) and not isinstance(messages, Mapping):
        items = [_item(m) for m in messages]
    else:
        items = [_item(messages)]
    prompt = "\n".join(_item_text(i) for i in items if i.get("role") == "user")
    return prompt, items


def _item(message: Any) -> dict[str, Any]:
    if isinstance(message, str):
        return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": message}]}
    if isinstance(message, Mapping):
        return dict(message)
    text, role = getattr(message, "text", None), getattr(message, "role", "user")
    if isinstance(text, str):
        return {"type": "message", "role": str(getattr(role, "value", role)),
                "content": [{"type": "input_text", "text": text}]}
    raise ConfigurationError(f"Cannot send a {type(message).__name__} as a message; pass a string, a list of strings, "
                             "or input items (dicts).")


def _item_text(item: Mapping[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
