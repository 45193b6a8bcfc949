"""The agent half of a create request: ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``reasoning``.

Each is checked the way the service checks it (a 400 naming the parameter) and echoed back on the Response object in
the shape the openai SDK's ``Tool`` types read strictly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request, invalid_type

FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WEB_SEARCH = frozenset({"web_search", "web_search_2025_08_26", "web_search_preview",
                         "web_search_preview_2025_03_11"})
SUPPORTED_TOOLS = ("function", *sorted(_WEB_SEARCH), "code_interpreter", "mcp")
_CHOICES = frozenset({"auto", "none", "required"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})


@dataclass(frozen=True)
class AgentParams:
    """What the request lets the mock model do besides writing text."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    reasoning: dict[str, Any] | None = None

    def functions(self) -> list[dict[str, Any]]:
        return [t for t in self.tools if t["type"] == "function"]

    def has(self, kind: str) -> bool:
        if kind == "web_search":
            return any(t["type"] in _WEB_SEARCH for t in self.tools)
        return any(t["type"] == kind for t in self.tools)


def parse_agent_params(body: dict[str, Any]) -> AgentParams:
    tools = _tools(body.get("tools"))
    return AgentParams(tools=tools, tool_choice=_tool_choice(body.get("tool_choice"), tools),
                       parallel_tool_calls=flag(body, "parallel_tool_calls", True),
                       reasoning=_reasoning(body.get("reasoning")))


def flag(body: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean request field: absent or null is ``default``, anything but a boolean is a 400 naming it."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_type(name, "a boolean", value)
    return value


def _tools(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_type("tools", "an array of tools", value)
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(param, "an object", tool)
        kind = tool.get("type")
        if kind == "function":
            tool = _function(tool, param)
            if tool["name"] in names:
                raise bad_request(f"Invalid '{param}.name': the function name '{tool['name']}' is declared twice.",
                                  param=f"{param}.name", code="invalid_value")
            names.add(tool["name"])
        elif kind == "mcp":
            if not isinstance(tool.get("server_label"), str) or not tool["server_label"]:
                raise bad_request(f"Missing required parameter: '{param}.server_label'.",
                                  param=f"{param}.server_label", code="missing_required_parameter")
        elif kind == "code_interpreter":
            container = tool.get("container")
            if not isinstance(container, (str, dict)):
                raise bad_request(f"Missing required parameter: '{param}.container'.",
                                  param=f"{param}.container", code="missing_required_parameter")
        elif kind not in _WEB_SEARCH:
            raise bad_request(f"Invalid value for '{param}.type': {kind!r}. This mock server supports "
                              f"{', '.join(repr(t) for t in SUPPORTED_TOOLS)}.", param=f"{param}.type",
                              code="invalid_value")
        tools.append(dict(tool))
    return tools


def _function(tool: dict[str, Any], param: str) -> dict[str, Any]:
    name = tool.get("name")
    if name is None:
        raise bad_request(f"Missing required parameter: '{param}.name'.", param=f"{param}.name",
                          code="missing_required_parameter")
    if not isinstance(name, str):
        raise invalid_type(f"{param}.name", "a string", name)
    if not FUNCTION_NAME.fullmatch(name):
        raise bad_request(f"Invalid '{param}.name': string does not match pattern. Expected a string that matches "
                          f"the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters), got {name[:80]!r}.",
                          param=f"{param}.name", code="invalid_value")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid_type(f"{param}.parameters", "an object (a JSON schema)", parameters)
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid_type(f"{param}.description", "a string", description)
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid_type(f"{param}.strict", "a boolean", strict)
    return {"type": "function", "name": name, "description": description,
            "parameters": parameters if parameters is not None else {"type": "object", "properties": {}},
            "strict": True if strict is None else strict}


def _tool_choice(value: object, tools: list[dict[str, Any]]) -> str | dict[str, Any]:
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in _CHOICES:
            raise bad_request(f"Invalid value for 'tool_choice': {value!r}. Supported values are: 'none', 'auto' "
                              "and 'required'.", param="tool_choice", code="invalid_value")
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not any(t["type"] == "function" and t["name"] == name for t in tools):
            raise bad_request(f"Invalid value for 'tool_choice': the function {name!r} is not among 'tools'.",
                              param="tool_choice", code="invalid_value")
        return {"type": "function", "name": name}
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return dict(value)
    raise invalid_type("tool_choice", "'none', 'auto', 'required' or a tool choice object", value)


def _reasoning(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_type("reasoning", "an object", value)
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in _SUMMARIES:
        raise bad_request(f"Invalid value for 'reasoning.summary': {summary!r}. Supported values are: 'auto', "
                          "'concise' and 'detailed'.", param="reasoning.summary", code="invalid_value")
    effort = value.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise bad_request(f"Invalid value for 'reasoning.effort': {effort!r}. Supported values are: "
                          f"{', '.join(repr(e) for e in sorted(_EFFORTS))}.", param="reasoning.effort",
                          code="invalid_value")
    return {"effort": effort, "summary": summary}
