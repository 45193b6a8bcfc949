"""Checking a create request: each mistake becomes a 400 that names the parameter, as the service does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import bad_request, invalid_type
from .records import new_id
from .tools import AgentParams, flag, parse_agent_params

_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


@dataclass
class CreateParams:
    model: str
    input_items: list[dict[str, Any]]
    instructions: str | None
    background: bool
    stream: bool
    store: bool
    previous_response_id: str | None
    metadata: dict[str, str]
    max_output_tokens: int | None
    agent: AgentParams


def parse_create(body: object) -> CreateParams:
    """Validate a ``POST /v1/responses`` body; unknown fields are tolerated."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise bad_request("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    if not model.strip():
        raise bad_request("Invalid 'model': empty string.", param="model", code="invalid_value")
    background = flag(body, "background", False)
    stream = flag(body, "stream", False)
    store = flag(body, "store", True)
    if background and not store:
        raise bad_request("Background mode requires 'store' to be true: background responses must be stored.",
                          param="store", code="invalid_value")
    instructions = _optional(body, "instructions", str, "a string")
    previous = _optional(body, "previous_response_id", str, "a string")
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise invalid_type("max_output_tokens", "an integer", max_tokens)
        if max_tokens < 16:
            raise bad_request("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
                              f"but got {max_tokens} instead.", param="max_output_tokens",
                              code="integer_below_min_value")
    return CreateParams(
        model=model,
        input_items=_input_items(body.get("input")),
        instructions=instructions,
        background=background,
        stream=stream,
        store=store,
        previous_response_id=previous,
        metadata=_metadata(body.get("metadata")),
        max_output_tokens=max_tokens,
        agent=parse_agent_params(body),
    )


def _optional(body: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise invalid_type(name, expected, value)
    return value


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_type("metadata", "an object", value)
    if len(value) > 16:
        raise bad_request("Invalid 'metadata': too many properties. Expected at most 16, but got "
                          f"{len(value)}.", param="metadata", code="object_above_max_properties")
    for key, item in value.items():
        if len(key) > 64:
            raise bad_request(f"Invalid 'metadata': key '{key[:20]}…' is longer than 64 characters.",
                              param="metadata", code="invalid_value")
        if not isinstance(item, str):
            raise invalid_type(f"metadata.{key}", "a string", item)
        if len(item) > 512:
            raise bad_request(f"Invalid 'metadata.{key}': string too long. Expected at most 512 characters.",
                              param=f"metadata.{key}", code="string_above_max_length")
    return dict(value)


def _input_items(value: object) -> list[dict[str, Any]]:
    """Normalise ``input`` to stored items with ids: a string becomes one user message."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_message("user", [{"type": "input_text", "text": value}])]
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    items = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid_type(param, "an object", item)
        kind = item.get("type", "message")
        if kind != "message":
            _check_agent_item(item, param)
            items.append({"id": item.get("id") or new_id("item"), **item})
            continue
        role = item.get("role")
        if role not in _ROLES:
            raise bad_request(f"Invalid value for '{param}.role': expected one of user, assistant, system or "
                              f"developer, but got {role!r}.", param=f"{param}.role", code="invalid_value")
        content = item.get("content")
        if isinstance(content, str):
            parts = [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
        elif isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise invalid_type(f"{param}.content[{j}]", "an object with a 'type'", part)
                if part["type"] in _TEXT_PARTS and not isinstance(part.get("text"), str):
                    raise invalid_type(f"{param}.content[{j}].text", "a string", part.get("text"))
                parts.append(part)
        else:
            raise invalid_type(f"{param}.content", "a string or an array", content)
        items.append(_message(role, parts, item.get("id")))
    return items


_AGENT_ITEM_FIELDS = {
    "function_call_output": (("call_id", str, "a string"), ("output", (str, list), "a string or an array")),
    "function_call": (("call_id", str, "a string"), ("name", str, "a string"), ("arguments", str, "a string")),
    "mcp_approval_response": (("approval_request_id", str, "a string"), ("approve", bool, "a boolean")),
}


def _check_agent_item(item: dict[str, Any], param: str) -> None:
    for name, kind, expected in _AGENT_ITEM_FIELDS.get(item.get("type", ""), ()):
        if name not in item:
            raise bad_request(f"Missing required parameter: '{param}.{name}'.", param=f"{param}.{name}",
                              code="missing_required_parameter")
        if not isinstance(item[name], kind):
            raise invalid_type(f"{param}.{name}", expected, item[name])


def _message(role: str, content: list[dict[str, Any]], item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("msg"), "type": "message", "role": role, "status": "completed",
            "content": content}


def item_text(item: dict[str, Any]) -> str:
    """The text of an input item, for seeding and matching scripted replies."""
    if isinstance(item.get("output"), str):
        return str(item["output"])
    if item.get("type") == "function_call":
        return f"{item.get('name')}({item.get('arguments')})"
    parts = item.get("output") if isinstance(item.get("output"), list) else item.get("content")
    if not isinstance(parts, list):
        return ""
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
