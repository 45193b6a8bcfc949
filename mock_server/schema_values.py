"""Arguments a mock model passes to a function: a deterministic value valid against the function's JSON schema.

Covers what function tools declare in practice (objects, arrays, strings with enums and lengths, numbers with
bounds, booleans, ``anyOf``/``oneOf`` and ``$ref`` into ``$defs``); anything else gets ``null``.
"""

from __future__ import annotations

import random
from typing import Any

_WORDS = ("MSFT", "Contoso", "Seattle", "Q4", "pricing", "launch", "Paris", "report", "north", "alpha")
_MAX_DEPTH = 8


def schema_value(schema: object, rng: random.Random, *, strict: bool = True,
                 defs: dict[str, Any] | None = None, depth: int = 0, prompt: str = "") -> Any:
    """A value that validates against ``schema``; ``strict`` fills every property, not only the required ones.

    A plausible value the ``prompt`` mentions (a ticker, a city) is preferred, as a model would pick it."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    defs = defs if defs is not None else {**schema.get("definitions", {}), **schema.get("$defs", {})}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return schema_value(defs.get(ref.rsplit("/", 1)[-1]), rng, strict=strict, defs=defs, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")] or options
            return schema_value(usable[0], rng, strict=strict, defs=defs, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(schema, rng, strict, defs, depth, prompt)
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = max(low, min(int(schema.get("maxItems", 2)), low + 2))
        return [schema_value(schema.get("items", {}), rng, strict=strict, defs=defs, depth=depth + 1)
                for _ in range(rng.randint(low, high))]
    if kind == "string":
        return _string(schema, rng)
    if kind in ("integer", "number"):
        return _number(schema, rng, integer=kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _object(schema: dict[str, Any], rng: random.Random, strict: bool, defs: dict[str, Any],
            depth: int, prompt: str = "") -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    value = {}
    for name, sub in properties.items():
        if strict or name in required or rng.random() < 0.5:
            hint = _NAME_HINTS.get(name.lower())
            plain = isinstance(sub, dict) and sub.get("type") == "string" and not ({"enum", "format", "const",
                                                                                   "pattern"} & sub.keys())
            mentioned = [h for h in hint or () if h.lower() in prompt.lower()]
            value[name] = rng.choice(mentioned or hint) if hint and plain else schema_value(
                sub, rng, strict=strict, defs=defs, depth=depth + 1)
    return value


# Plausible values for common parameter names, so a mock call reads like a real one.
_NAME_HINTS = {
    "ticker": ("MSFT", "AAPL", "NVDA"), "symbol": ("MSFT", "AAPL", "NVDA"),
    "city": ("Seattle", "Paris", "Tokyo"), "location": ("Seattle, WA", "Paris, France", "Tokyo, Japan"),
    "query": ("Q4 launch competitor pricing", "market share 2026"), "q": ("Q4 launch competitor pricing",),
    "country": ("US", "FR", "JP"), "currency": ("USD", "EUR", "JPY"), "name": ("Contoso", "Fabrikam"),
}


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS).lower()}"
    if fmt == "email":
        return f"{rng.choice(_WORDS).lower()}@example.com"
    text = rng.choice(_WORDS)
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    while len(text) < low:
        text += " " + rng.choice(_WORDS)
    return text[: int(high)] if isinstance(high, int) else text


def _number(schema: dict[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", max(low, 0) + 100))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low = low + 1 if integer else low + (high - low) / 100
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high = high - 1 if integer else high - (high - low) / 100
    if integer:
        return rng.randint(int(low), max(int(low), int(high)))
    return round(rng.uniform(float(low), float(high)), 2)
