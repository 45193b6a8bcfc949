"""Function tools in Agent Framework's shape: ``@tool``, a JSON schema from type hints, and invoking a call.

``@tool`` (bare, or with ``name``, ``description``, ``approval_mode``) turns a function, sync or async, into a
:class:`FunctionTool`; a plain function passed in ``tools=[...]`` is turned into one the same way. The schema comes
from the type hints: ``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict``, ``Literal[...]``, enums,
``X | None``, pydantic models, and ``Annotated[X, "description"]`` (or ``Annotated[X, Field(description=...)]``);
parameters with defaults are optional. The docstring's first paragraph is the default description.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

from ._errors import ConfigurationError

__all__ = ["FunctionTool", "tool"]

ApprovalMode = Literal["never_require", "always_require"]
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


class FunctionTool:
    """A function the model may call: its name, description, JSON schema and approval mode.

    Calling the tool object calls the function; :meth:`invoke` runs it for a model's call (arguments as a JSON
    string or dict), in a worker thread when it is synchronous, so the event loop keeps going.
    """

    def __init__(self, func: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 approval_mode: ApprovalMode = "never_require",
                 parameters: Mapping[str, Any] | None = None) -> None:
        if not callable(func):
            raise ConfigurationError(f"A tool must be a function, not {type(func).__name__}.")
        if approval_mode not in ("never_require", "always_require"):
            raise ConfigurationError(f"approval_mode must be 'never_require' or 'always_require', not "
                                     f"{approval_mode!r}.")
        self.func = func
        self.name: str = name or str(getattr(func, "__name__", ""))
        if not _NAME.fullmatch(self.name):
            raise ConfigurationError(f"Tool name {self.name!r} is not valid: use 1 to 64 letters, digits, '_' or "
                                     "'-'. Pass name=... to @tool.")
        self.description = description if description is not None else _doc_summary(func)
        self.approval_mode: ApprovalMode = approval_mode
        self.parameters = dict(parameters) if parameters is not None else schema_of(func)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool(name={self.name!r}, approval_mode={self.approval_mode!r})"

    def to_dict(self) -> dict[str, Any]:
        """The tool as the Responses API declares it."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters, "strict": False}

    async def invoke(self, arguments: str | Mapping[str, Any] | None) -> Any:
        """Run the function for one call and return its result (exceptions propagate to the caller)."""
        kwargs = json.loads(arguments or "{}") if isinstance(arguments, str) else dict(arguments or {})
        if not isinstance(kwargs, dict):
            raise TypeError(f"the arguments of {self.name} must be a JSON object, got {type(kwargs).__name__}")
        if inspect.iscoroutinefunction(self.func):
            return await self.func(**kwargs)
        result = await asyncio.to_thread(self.func, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


@overload
def tool(func: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(*, name: str | None = None, description: str | None = None,
         approval_mode: ApprovalMode = "never_require") -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(func: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None,
         approval_mode: ApprovalMode = "never_require") -> Any:
    """Make a function a tool the model can call: ``@tool`` or ``@tool(name=..., approval_mode="always_require")``."""
    if func is not None:
        return FunctionTool(func)
    return lambda f: FunctionTool(f, name=name, description=description, approval_mode=approval_mode)


def as_tool(value: Any) -> FunctionTool | dict[str, Any]:
    """A function tool, or a hosted tool's declaration (a dict such as ``{"type": "web_search"}``) as it is."""
    if isinstance(value, FunctionTool):
        return value
    if isinstance(value, Mapping):
        if not isinstance(value.get("type"), str):
            raise ConfigurationError(f"A tool given as a dict needs a 'type' (e.g. 'web_search'); got {dict(value)!r}.")
        return dict(value)
    if callable(value):
        return FunctionTool(value)
    raise ConfigurationError(f"Cannot use a {type(value).__name__} as a tool; pass a function, a @tool, or a hosted "
                             "tool's dict such as {'type': 'web_search'}.")


def _doc_summary(func: Callable[..., Any]) -> str | None:
    doc = inspect.getdoc(func)
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip() if doc else None


def schema_of(func: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a function's parameters, from its type hints."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # an unresolvable annotation: name it rather than guess
        raise ConfigurationError(f"Cannot read the type hints of {getattr(func, '__name__', func)!r} ({exc}); "
                                 "pass parameters=... to FunctionTool.") from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = _schema(hints.get(param.name, Any))
        if param.default is not param.empty:
            default = param.default.value if isinstance(param.default, enum.Enum) else param.default
            if isinstance(default, (str, int, float, bool)) or default is None:
                schema["default"] = default
        else:
            required.append(param.name)
        properties[param.name] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        schema = _schema(base)
        for extra in extras:
            description = extra if isinstance(extra, str) else getattr(extra, "description", None)
            if isinstance(description, str):
                schema["description"] = description
        return schema
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return {"anyOf": [_schema(options[0]), {"type": "null"}]}
        return {"anyOf": [_schema(a) for a in typing.get_args(hint)]}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        args = typing.get_args(hint)
        return {"type": "array", "items": _schema(args[0]) if args and args[0] is not Ellipsis else {}}
    if origin is dict or hint is dict:
        return {"type": "object"}
    model_schema = getattr(hint, "model_json_schema", None)
    if callable(model_schema):  # a pydantic model
        return dict(model_schema())
    return {}
