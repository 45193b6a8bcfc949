"""Output items other than the answer message: reasoning, web searches, code, function calls and MCP approvals.

A trajectory step (``{"search": "q"}``, ``{"call": "get_price", ...}``) becomes an :class:`ItemPlan`, the plan
becomes a fixed list of steps, and :class:`OutputItems` applies those steps one at a time, building each event in
the exact shape of the openai SDK's types and keeping every item as it stands, so a snapshot taken between any two
events is what the service would show.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Step(NamedTuple):
    """One event of a response's plan. A tuple of atoms, so the garbage collector does not track thousands."""

    kind: str
    delta: str = ""
    delay: float = 0.0  # seconds after the previous step
    item: int = -1  # the output index of the item it belongs to
    part: int = 0  # the summary part or annotation it belongs to


@dataclass(frozen=True)
class ItemPlan:
    """One output item to stream: its type, id, streamed pieces and fixed fields."""

    kind: str  # reasoning | web_search | code | function_call | approval | mcp_call
    id: str
    pieces: tuple[tuple[str, ...], ...] = ()  # summary parts, code or arguments, as deltas
    data: dict[str, Any] = field(default_factory=dict)


def item_id(response_id: str, index: int, prefix: str) -> str:
    """A deterministic item id, so an item regenerated after a restart keeps its id."""
    return f"{prefix}_{hashlib.sha256(f'{response_id}:{index}'.encode()).hexdigest()[:48]}"


def word_deltas(text: str) -> tuple[str, ...]:
    """Split text into word-sized deltas (whitespace stays with the word before it)."""
    return tuple(re.findall(r"\S+\s*|\s+", text)) or ((text,) if text else ())


def _json_deltas(arguments: str) -> tuple[str, ...]:
    return tuple(arguments[i:i + 8] for i in range(0, len(arguments), 8)) or ("",)


def item_plan(spec: dict[str, Any], response_id: str, index: int) -> ItemPlan:
    """The plan of one non-answer trajectory step."""
    if "reasoning" in spec:
        parts = spec["reasoning"] if isinstance(spec["reasoning"], list) else [spec["reasoning"]]
        return ItemPlan("reasoning", item_id(response_id, index, "rs"), tuple(word_deltas(str(p)) for p in parts))
    if "search" in spec or "open_page" in spec or "find_in_page" in spec:
        if "search" in spec:
            action: dict[str, Any] = {"type": "search", "query": str(spec["search"]),
                                      "sources": [{"type": "url", "url": u} for u in spec.get("sources", [])]}
        elif "open_page" in spec:
            action = {"type": "open_page", "url": str(spec["open_page"])}
        else:
            action = {"type": "find_in_page", "pattern": str(spec["find_in_page"]), "url": str(spec.get("url", ""))}
        return ItemPlan("web_search", item_id(response_id, index, "ws"), data={"action": action})
    if "code" in spec:
        return ItemPlan("code", item_id(response_id, index, "ci"), (word_deltas(str(spec["code"])),),
                        {"logs": str(spec.get("logs", "")), "container_id": f"cntr_{response_id[-24:]}"})
    if "call" in spec:
        arguments = json.dumps(spec.get("arguments", {}), ensure_ascii=False)
        return ItemPlan("function_call", item_id(response_id, index, "fc"), (_json_deltas(arguments),),
                        {"name": str(spec["call"]), "call_id": item_id(response_id, index, "call")[:29]})
    if "approval" in spec:
        return ItemPlan("approval", item_id(response_id, index, "mcpr"), data={
            "name": str(spec["approval"]), "server_label": str(spec.get("server_label", "mcp")),
            "arguments": json.dumps(spec.get("arguments", {}), ensure_ascii=False)})
    if "mcp_call" in spec:
        return ItemPlan("mcp_call", item_id(response_id, index, "mcp"), data={
            "name": str(spec["mcp_call"]), "server_label": str(spec.get("server_label", "mcp")),
            "arguments": json.dumps(spec.get("arguments", {}), ensure_ascii=False),
            "output": str(spec.get("output", "")), "approval_request_id": spec.get("approval_request_id")})
    raise ValueError(f"unknown trajectory step {spec!r}")


def item_steps(plan: ItemPlan, index: int, gap: float, tool_time: float) -> list[Step]:
    """The steps of one item, from ``output_item.added`` to ``output_item.done``."""
    steps = [Step("item_added", item=index)]
    if plan.kind == "reasoning":
        for part, deltas in enumerate(plan.pieces):
            steps.append(Step("summary_part_added", item=index, part=part))
            steps += [Step("summary_delta", d, gap, index, part) for d in deltas]
            steps += [Step("summary_text_done", item=index, part=part),
                      Step("summary_part_done", item=index, part=part)]
    elif plan.kind == "web_search":
        steps += [Step("search_in_progress", item=index), Step("searching", delay=gap, item=index),
                  Step("search_completed", delay=tool_time, item=index)]
    elif plan.kind == "code":
        steps.append(Step("code_in_progress", item=index))
        steps += [Step("code_delta", d, gap, index) for d in plan.pieces[0]]
        steps += [Step("code_done", item=index), Step("interpreting", item=index),
                  Step("code_completed", delay=tool_time, item=index)]
    elif plan.kind == "function_call":
        steps += [Step("arguments_delta", d, gap, index) for d in plan.pieces[0]]
        steps.append(Step("arguments_done", item=index))
    elif plan.kind == "mcp_call":
        steps += [Step("mcp_in_progress", item=index), Step("mcp_completed", delay=tool_time, item=index)]
    steps.append(Step("item_done", delay=gap, item=index))
    return steps


EVENT_TYPES = {
    "summary_part_added": "response.reasoning_summary_part.added",
    "summary_delta": "response.reasoning_summary_text.delta",
    "summary_text_done": "response.reasoning_summary_text.done",
    "summary_part_done": "response.reasoning_summary_part.done",
    "search_in_progress": "response.web_search_call.in_progress",
    "searching": "response.web_search_call.searching",
    "search_completed": "response.web_search_call.completed",
    "code_in_progress": "response.code_interpreter_call.in_progress",
    "code_delta": "response.code_interpreter_call_code.delta",
    "code_done": "response.code_interpreter_call_code.done",
    "interpreting": "response.code_interpreter_call.interpreting",
    "code_completed": "response.code_interpreter_call.completed",
    "arguments_delta": "response.function_call_arguments.delta",
    "arguments_done": "response.function_call_arguments.done",
    "mcp_in_progress": "response.mcp_call.in_progress",
    "mcp_completed": "response.mcp_call.completed",
}
ITEM_STEP_KINDS = frozenset(EVENT_TYPES)


class OutputItems:
    """The non-message output items of one response, as the events applied so far have built them."""

    def __init__(self, plans: list[ItemPlan]) -> None:
        self.plans = plans
        self._items: list[dict[str, Any]] = []
        self._pieces: list[list[list[str]]] = [[[] for _ in p.pieces] or [[]] for p in plans]

    def snapshot(self) -> list[dict[str, Any]]:
        """The items added so far, as the Response object lists them."""
        return [self._current(i) for i in range(len(self._items))]

    def interrupt(self) -> None:
        """The response ended early: items still going are ``incomplete``."""
        for item in self._items:
            if item.get("status") in ("in_progress", "searching", "interpreting", "calling"):
                item["status"] = "incomplete"

    def _text(self, index: int, piece: int = 0) -> str:
        return "".join(self._pieces[index][piece])

    def _current(self, index: int) -> dict[str, Any]:
        item = dict(self._items[index])
        kind = self.plans[index].kind
        if kind == "reasoning":
            item["summary"] = [{"type": "summary_text", "text": self._text(index, p)}
                               for p in range(item.pop("_parts", 0))]
        elif kind == "code" and item.get("code") is not None:
            item["code"] = self._text(index)
        elif kind == "function_call":
            item["arguments"] = self._text(index)
        return item

    def apply(self, seq: int, step: Step) -> dict[str, Any]:
        """Apply one step of an item and return its event (without ``type``)."""
        index, plan = step.item, self.plans[step.item]
        event: dict[str, Any] = {"sequence_number": seq, "output_index": index}
        kind = step.kind
        if kind == "item_added":
            self._items.append(_added_item(plan))
            event["item"] = self._current(index)
            return event
        if kind == "item_done":
            item = self._items[index]
            if item.get("status") is not None:
                item["status"] = "completed"
            event["item"] = self._current(index)
            return event
        event["item_id"] = plan.id
        item = self._items[index]
        if kind.startswith("summary_"):
            event["summary_index"] = step.part
            if kind == "summary_part_added":
                item["_parts"] = step.part + 1
                event["part"] = {"type": "summary_text", "text": ""}
            elif kind == "summary_delta":
                self._pieces[index][step.part].append(step.delta)
                event["delta"] = step.delta
            elif kind == "summary_text_done":
                event["text"] = self._text(index, step.part)
            else:
                event["part"] = {"type": "summary_text", "text": self._text(index, step.part)}
        elif kind in ("code_delta", "arguments_delta"):
            self._pieces[index][0].append(step.delta)
            event["delta"] = step.delta
        elif kind == "code_done":
            event["code"] = self._text(index)
        elif kind == "arguments_done":
            event["arguments"] = self._text(index)
        else:  # a status change of a hosted tool call
            status = {"searching": "searching", "interpreting": "interpreting"}.get(kind, item.get("status"))
            if kind == "search_completed" or kind == "mcp_completed":
                status = "completed"
            elif kind == "code_completed":
                status = "completed"
                item["outputs"] = [{"type": "logs", "logs": plan.data["logs"]}] if plan.data["logs"] else []
            if kind == "mcp_completed":
                item["output"] = plan.data["output"]
            item["status"] = status
        return event


def _added_item(plan: ItemPlan) -> dict[str, Any]:
    d = plan.data
    if plan.kind == "reasoning":
        return {"type": "reasoning", "id": plan.id, "summary": [], "_parts": 0}
    if plan.kind == "web_search":
        return {"type": "web_search_call", "id": plan.id, "status": "in_progress", "action": d["action"]}
    if plan.kind == "code":
        return {"type": "code_interpreter_call", "id": plan.id, "status": "in_progress", "code": "",
                "container_id": d["container_id"], "outputs": None}
    if plan.kind == "function_call":
        return {"type": "function_call", "id": plan.id, "call_id": d["call_id"], "name": d["name"],
                "arguments": "", "status": "in_progress"}
    if plan.kind == "approval":
        return {"type": "mcp_approval_request", "id": plan.id, "name": d["name"], "server_label": d["server_label"],
                "arguments": d["arguments"]}
    return {"type": "mcp_call", "id": plan.id, "name": d["name"], "server_label": d["server_label"],
            "arguments": d["arguments"], "approval_request_id": d["approval_request_id"], "output": None,
            "error": None, "status": "in_progress"}
