"""A run's output items as its events build them: messages, reasoning, tool calls, approvals, and any other kind.

The items are the Response object's ``output`` as it stands after the events folded so far, so a run broken and
resumed at any event (the middle of a function call's arguments included) ends with exactly the service's items.
A message's text is not copied into its item: each ``output_text`` part keeps the span of the run's ``text`` it
covers (``_span``), so a 1 MB answer is stored once and an ``output_text.delta`` costs the fold nothing. Events of
unknown types, and items of unknown types, are kept as they came, never dropped and never fatal.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["OutputItems", "expand_items"]

_STATUS_EVENTS = {
    "response.web_search_call.in_progress": "in_progress",
    "response.web_search_call.searching": "searching",
    "response.web_search_call.completed": "completed",
    "response.file_search_call.in_progress": "in_progress",
    "response.file_search_call.searching": "searching",
    "response.file_search_call.completed": "completed",
    "response.code_interpreter_call.in_progress": "in_progress",
    "response.code_interpreter_call.interpreting": "interpreting",
    "response.code_interpreter_call.completed": "completed",
    "response.mcp_call.in_progress": "in_progress",
    "response.mcp_call.completed": "completed",
    "response.mcp_call.failed": "failed",
    "response.image_generation_call.in_progress": "in_progress",
    "response.image_generation_call.generating": "generating",
    "response.image_generation_call.completed": "completed",
}
_APPENDS = {  # event type -> the item field its deltas extend
    "response.function_call_arguments.delta": "arguments",
    "response.mcp_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "input",
    "response.code_interpreter_call_code.delta": "code",
}
_DONES = {  # event type -> (the item field it settles, the event field holding the whole value)
    "response.function_call_arguments.done": ("arguments", "arguments"),
    "response.mcp_call_arguments.done": ("arguments", "arguments"),
    "response.custom_tool_call_input.done": ("input", "input"),
    "response.code_interpreter_call_code.done": ("code", "code"),
}


def expand_items(items: list[dict[str, Any]] | None, text: str) -> list[dict[str, Any]]:
    """Items as the Response object lists them: each message part's span of ``text`` put back as its text."""
    result = []
    for item in items or ():
        if item.get("type") == "message" and isinstance(item.get("content"), list):
            item = {**item, "content": [_expand_part(part, text) for part in item["content"]]}
        result.append(item)
    return result


def _expand_part(part: Any, text: str) -> Any:
    if not isinstance(part, dict) or "_span" not in part:
        return part
    start, end = part["_span"]
    expanded = {key: value for key, value in part.items() if key != "_span"}
    expanded["text"] = text[start:len(text) if end is None else end]
    return expanded


class OutputItems:
    """Folds a run's events into its output items.

    Args:
        stored: items as :meth:`stored` returned them (from the run store), to go on from.
    """

    def __init__(self, stored: list[dict[str, Any]] | None = None) -> None:
        self._items: dict[int, dict[str, Any]] = {}
        #: Deltas not yet joined into their item, by (output index, path to the string): no quadratic ``+=``.
        self._tails: dict[tuple[int, tuple[Any, ...]], list[str]] = {}
        for index, item in enumerate(stored or ()):
            if isinstance(item, dict):
                self._items[index] = copy.deepcopy(item)

    def __len__(self) -> int:
        return len(self._items)

    def stored(self) -> list[dict[str, Any]]:
        """The items in the store's form (message text as spans of the run's text), a copy."""
        self._settle()
        return copy.deepcopy([self._items[i] for i in sorted(self._items)])

    def snapshot(self, text: str) -> list[dict[str, Any]]:
        """The items as the Response object lists them, given the run's text."""
        self._settle()
        return copy.deepcopy(expand_items([self._items[i] for i in sorted(self._items)], text))

    def _append(self, index: int, path: tuple[Any, ...], delta: str) -> None:
        tail = self._tails.get((index, path))
        if tail is None:
            self._tails[(index, path)] = [delta]
        else:
            tail.append(delta)

    def _settle(self) -> None:
        """Join the deltas waiting in ``_tails`` into their items."""
        for (index, path), parts in self._tails.items():
            target: Any = self._items[index]
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = (target.get(path[-1]) or "") + "".join(parts)
        self._tails.clear()

    def get(self, output_index: object) -> dict[str, Any] | None:
        return self._items.get(output_index) if isinstance(output_index, int) else None

    def replace(self, output: object, text: str, *, start: int = 0) -> None:
        """Take the service's own items (a polled or final Response's ``output``), matching message text to spans.

        Each ``output_text`` part's text is located in ``text`` (from ``start``) in order; a part that is not found
        keeps its text.
        """
        if not isinstance(output, list):
            return
        position = start
        items: dict[int, dict[str, Any]] = {}
        for index, item in enumerate(output):
            if not isinstance(item, dict):
                continue
            item = copy.deepcopy(item)
            if item.get("type") == "message" and isinstance(item.get("content"), list):
                for part in item["content"]:
                    if isinstance(part, dict) and part.get("type") == "output_text" and \
                            isinstance(part.get("text"), str):
                        found = text.find(part["text"], position)
                        if found >= 0:
                            position = found + len(part["text"])
                            part["_span"] = [found, position]
                            del part["text"]
            items[index] = item
        self._items = items

    def apply(self, event: Mapping[str, Any], text_length: int) -> dict[str, Any] | None:
        """Fold one event (not a text delta); ``text_length`` is the run's text length after the events before it.

        Returns the item the event belongs to, if any. An event this fold does not understand changes nothing.
        """
        try:
            return self._apply(event, text_length)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return self.get(event.get("output_index"))  # malformed for its type: kept raw by the caller

    def _apply(self, event: Mapping[str, Any], text_length: int) -> dict[str, Any] | None:
        kind = event.get("type", "")
        index = event.get("output_index")
        if not isinstance(index, int):
            return None
        if kind in _APPENDS:
            growing = self._items[index]
            self._append(index, (_APPENDS[kind],), event["delta"])
            return growing
        if kind == "response.reasoning_summary_text.delta":
            growing = self._items[index]
            if not 0 <= event["summary_index"] < len(growing["summary"]):
                return growing  # a part never announced: the event is kept raw by the caller
            self._append(index, ("summary", event["summary_index"], "text"), event["delta"])
            return growing
        if self._tails:
            self._settle()
        if kind == "response.output_item.added" and isinstance(event.get("item"), dict):
            added: dict[str, Any] = copy.deepcopy(event["item"])
            if added.get("type") == "message":
                added["content"] = [self._new_part(p, text_length) for p in added.get("content") or []]
            self._items[index] = added
            return added
        item = self.get(index)
        if item is None:
            return None
        if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            self._done(index, item, copy.deepcopy(event["item"]), text_length)
            return self._items[index]
        if kind == "response.content_part.added":
            content = item.setdefault("content", [])
            while len(content) < event["content_index"]:
                content.append({"type": "output_text", "annotations": [], "_span": [text_length, text_length]})
            content[event["content_index"]:event["content_index"] + 1] = [self._new_part(event["part"],
                                                                                          text_length)]
        elif kind in ("response.output_text.done", "response.content_part.done"):
            part = item["content"][event["content_index"]]
            if "_span" in part and part["_span"][1] is None:
                part["_span"][1] = text_length
            if kind == "response.content_part.done" and isinstance(event.get("part"), dict):
                part["annotations"] = list(event["part"].get("annotations") or part.get("annotations") or [])
        elif kind == "response.output_text.annotation.added":
            part = item["content"][event["content_index"]]
            part.setdefault("annotations", []).append(event["annotation"])
        elif kind == "response.refusal.delta":
            part = item["content"][event["content_index"]]
            part["refusal"] = part.get("refusal", "") + event["delta"]
        elif kind == "response.reasoning_summary_part.added":
            summary = item.setdefault("summary", [])
            while len(summary) <= event["summary_index"]:
                summary.append({"type": "summary_text", "text": ""})
        elif kind in ("response.reasoning_summary_text.done", "response.reasoning_summary_part.done"):
            text = event["text"] if "text" in event else event["part"]["text"]
            item["summary"][event["summary_index"]]["text"] = text
        elif kind == "response.reasoning_text.delta":
            content = item.setdefault("content", [])
            while len(content) <= event["content_index"]:
                content.append({"type": "reasoning_text", "text": ""})
            content[event["content_index"]]["text"] += event["delta"]
        elif kind in _DONES:
            field, source = _DONES[kind]
            item[field] = event[source]
        elif kind in _STATUS_EVENTS:
            item["status"] = _STATUS_EVENTS[kind]
        return item

    @staticmethod
    def _new_part(part: Any, text_length: int) -> Any:
        if isinstance(part, dict) and part.get("type") == "output_text":
            new = {key: value for key, value in part.items() if key != "text"}
            new.setdefault("annotations", [])
            new["_span"] = [text_length, None]
            return new
        return copy.deepcopy(part)

    def _done(self, index: int, item: dict[str, Any], done: dict[str, Any], text_length: int) -> None:
        """The service's final form of the item; a message keeps its spans (its text is the run's)."""
        if done.get("type") == "message" and isinstance(done.get("content"), list):
            ours = item.get("content") or []
            for n, part in enumerate(done["content"]):
                if isinstance(part, dict) and part.get("type") == "output_text" and n < len(ours) and \
                        "_span" in ours[n]:
                    start, end = ours[n]["_span"]
                    part.pop("text", None)
                    part["_span"] = [start, text_length if end is None else end]
        self._items[index] = done
