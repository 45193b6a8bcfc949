"""Typed contents of updates and responses, in the shape of Agent Framework's ``Content``.

``content.type`` uses Agent Framework's names (``text``, ``text_reasoning``, ``function_call``, ``function_result``,
``search_tool_call``, ``code_interpreter_tool_call``, ``mcp_server_tool_call``, ``function_approval_request``,
``usage``, ...), with the same attribute names (``text``, ``call_id``, ``name``, ``arguments``, ``result``,
``annotations``, ``usage_details``), so code written for Agent Framework's content types reads these naturally.
Citations are Agent Framework's annotation dicts: ``{"type": "citation", "title", "url", "annotated_regions"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["Content", "arguments_of", "contents_of_event", "contents_of_items"]


def arguments_of(arguments: str | None) -> dict[str, Any]:
    """A call's JSON arguments as a dict (``{}`` when there are none or they are not a JSON object)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Content:
    """One piece of what a run produced. Unset attributes are None; ``raw_representation`` is the wire object."""

    __slots__ = ("annotations", "arguments", "call_id", "id", "inputs", "merge_mode", "name", "outputs",
                 "raw_representation", "result", "server_name", "status", "text", "tool_name", "type",
                 "usage_details")

    def __init__(self, type: str, *, text: str | None = None, call_id: str | None = None, name: str | None = None,
                 arguments: str | None = None, result: Any = None, id: str | None = None,
                 status: str | None = None, annotations: list[dict[str, Any]] | None = None,
                 usage_details: dict[str, Any] | None = None, server_name: str | None = None,
                 tool_name: str | None = None, inputs: list[Content] | None = None,
                 outputs: list[Content] | None = None, merge_mode: str | None = None,
                 raw_representation: Any = None) -> None:
        self.type = type
        self.text = text
        self.call_id = call_id
        self.name = name
        self.arguments = arguments
        self.result = result
        self.id = id
        self.status = status
        self.annotations = annotations
        self.usage_details = usage_details
        self.server_name = server_name
        self.tool_name = tool_name
        self.inputs = inputs
        self.outputs = outputs
        self.merge_mode = merge_mode
        self.raw_representation = raw_representation

    def parse_arguments(self) -> dict[str, Any]:
        """A function call's arguments as a dict (``{}`` when there are none or they are not a JSON object)."""
        return arguments_of(self.arguments)

    def __repr__(self) -> str:
        shown = {name: getattr(self, name) for name in ("text", "call_id", "name", "arguments", "result", "id",
                                                        "status", "annotations", "usage_details")
                 if getattr(self, name) is not None}
        return f"Content({self.type!r}" + "".join(f", {k}={v!r}" for k, v in shown.items()) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Content):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__
                   if name != "raw_representation")

    __hash__ = None  # type: ignore[assignment]


def citation(annotation: Mapping[str, Any]) -> dict[str, Any]:
    """A ``url_citation`` annotation as Agent Framework's citation annotation."""
    return {"type": "citation", "title": annotation.get("title"), "url": annotation.get("url"),
            "annotated_regions": [{"type": "text_span", "start_index": annotation.get("start_index"),
                                   "end_index": annotation.get("end_index")}],
            "raw_representation": dict(annotation)}


def usage_details(usage: Mapping[str, Any]) -> dict[str, Any]:
    details = usage.get("output_tokens_details") or {}
    return {"input_token_count": usage.get("input_tokens"), "output_token_count": usage.get("output_tokens"),
            "total_token_count": usage.get("total_tokens"),
            "reasoning_token_count": details.get("reasoning_tokens") if isinstance(details, dict) else None}


def contents_of_event(event: Mapping[str, Any], item: Mapping[str, Any] | None) -> list[Content]:
    """What one event adds, given the item it belongs to (as folded so far)."""
    kind = event.get("type", "")
    item = item or {}
    raw = dict(event)
    if kind == "response.output_text.delta":
        return [Content("text", text=event.get("delta") or "", merge_mode="append", raw_representation=raw)]
    if kind == "response.output_text.annotation.added" and isinstance(event.get("annotation"), dict):
        return [Content("text", text="", annotations=[citation(event["annotation"])], merge_mode="append",
                        raw_representation=raw)]
    if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        return [Content("text_reasoning", text=event.get("delta") or "", id=event.get("item_id"),
                        merge_mode="append", raw_representation=raw)]
    if kind == "response.function_call_arguments.delta":
        return [Content("function_call", call_id=item.get("call_id"), name=item.get("name"),
                        arguments=event.get("delta") or "", id=event.get("item_id"), merge_mode="append",
                        raw_representation=raw)]
    if kind == "response.code_interpreter_call_code.delta":
        return [Content("code_interpreter_tool_call", call_id=event.get("item_id"), status=item.get("status"),
                        inputs=[Content("text", text=event.get("delta") or "")], merge_mode="append",
                        raw_representation=raw)]
    if kind.startswith(("response.web_search_call.", "response.file_search_call.")):
        return [Content("search_tool_call", call_id=event.get("item_id"), status=kind.rsplit(".", 1)[-1],
                        result=item.get("action"), raw_representation=raw)]
    if kind in ("response.output_item.added", "response.output_item.done") and isinstance(event.get("item"), dict):
        done = kind.endswith("done")
        if done or event["item"].get("type") in ("mcp_approval_request", "function_call"):
            # Text and reasoning came as deltas already; the rest is announced (a call) or settled here.
            return [c for c in _contents_of_item(event["item"], done=done) if c.type not in ("text",
                                                                                             "text_reasoning")]
    if kind in ("response.completed", "response.incomplete", "response.failed"):
        usage = (event.get("response") or {}).get("usage")
        if isinstance(usage, dict):
            return [Content("usage", usage_details=usage_details(usage), raw_representation=usage)]
    return []


def contents_of_items(items: list[dict[str, Any]], usage: Mapping[str, Any] | None = None) -> list[Content]:
    """Everything a finished (or snapshot) run holds, item by item, then its usage."""
    contents = [c for item in items for c in _contents_of_item(item, done=True)]
    if usage:
        contents.append(Content("usage", usage_details=usage_details(usage), raw_representation=dict(usage)))
    return contents


def _contents_of_item(item: Mapping[str, Any], *, done: bool) -> list[Content]:
    kind = item.get("type")
    raw = dict(item)
    if kind == "message":
        return [Content("text", text=part.get("text", ""), annotations=[citation(a) for a in part.get(
                    "annotations") or [] if isinstance(a, dict) and a.get("type") == "url_citation"] or None,
                        raw_representation=part)
                for part in item.get("content") or [] if isinstance(part, dict) and part.get("type") ==
                "output_text"]
    if kind == "reasoning":
        parts = [s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict)]
        return [Content("text_reasoning", text="\n\n".join(parts), id=item.get("id"), raw_representation=raw)]
    if kind == "function_call":
        return [Content("function_call", call_id=item.get("call_id"), name=item.get("name"),
                        arguments=item.get("arguments") if done else "", id=item.get("id"),
                        status=item.get("status"), merge_mode="replace" if done else None, raw_representation=raw)]
    if kind == "function_call_output":
        return [Content("function_result", call_id=item.get("call_id"), result=item.get("output"),
                        raw_representation=raw)]
    if kind in ("web_search_call", "file_search_call"):
        return [Content("search_tool_call", call_id=item.get("id"), status=item.get("status"),
                        result=item.get("action"), raw_representation=raw)]
    if kind == "code_interpreter_call":
        logs = [o.get("logs", "") for o in item.get("outputs") or [] if isinstance(o, dict) and
                o.get("type") == "logs"]
        return [Content("code_interpreter_tool_call", call_id=item.get("id"), status=item.get("status"),
                        inputs=[Content("text", text=item.get("code") or "")], raw_representation=raw),
                Content("code_interpreter_tool_result", call_id=item.get("id"),
                        outputs=[Content("text", text=log) for log in logs], raw_representation=raw)]
    if kind == "mcp_call":
        return [Content("mcp_server_tool_call", call_id=item.get("id"), tool_name=item.get("name"),
                        server_name=item.get("server_label"), arguments=item.get("arguments"),
                        status=item.get("status"), raw_representation=raw),
                Content("mcp_server_tool_result", call_id=item.get("id"), result=item.get("output"),
                        raw_representation=raw)]
    if kind == "mcp_approval_request":
        return [Content("function_approval_request", id=item.get("id"), name=item.get("name"),
                        arguments=item.get("arguments"), server_name=item.get("server_label"),
                        raw_representation=raw)]
    return []
