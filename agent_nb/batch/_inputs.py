"""A batch's inputs as ``(key, input)`` pairs: prompts, input-item lists, ``(key, prompt)`` pairs or a pandas column.

Keys identify items across re-runs: given ones are used as they are; otherwise an item's key is a hash of its input
(with ``#2``, ``#3`` … for repeats), so running the same list again finds the same items, and a longer list adds only
the new ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from .._errors import ConfigurationError

__all__ = ["Inputs", "input_key", "normalise_inputs", "prompt_of"]

Inputs = list[tuple[str, Any]]
_MAX_KEY = 200


def input_key(value: Any) -> str:
    """The key of an input without a given one: ``h_`` and 16 hex characters of its canonical JSON's SHA-256."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "h_" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_input(value: Any, where: str) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise ConfigurationError(f"{where} is an empty prompt; every batch item needs something to ask.")
        return value
    if isinstance(value, (list, dict)):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where} is not JSON-serialisable ({exc}); a batch item's input must be a "
                                     "prompt or a list of Responses input items.") from None
        return value
    raise ConfigurationError(f"{where} is a {type(value).__name__}; a batch item's input must be a prompt (str), a "
                             "list of Responses input items, or a (key, prompt) pair.")


def _pairs(inputs: Any) -> Iterable[tuple[str | None, Any]]:
    """``(given key or None, input)`` for each input, whatever form the inputs came in."""
    kind = type(inputs).__name__
    module = type(inputs).__module__.partition(".")[0]
    if module == "pandas" and kind == "DataFrame":
        columns = list(inputs.columns)
        raise ConfigurationError(f"Pass one column of the DataFrame (for example df[{columns[0]!r}]), not the whole "
                                 "frame: each value is one item's prompt, and the index gives the keys."
                                 if columns else "The DataFrame has no columns to take prompts from.")
    if module == "pandas" and kind == "Series":
        return ((str(index), value) for index, value in inputs.items())
    if isinstance(inputs, (str, bytes)):
        raise ConfigurationError("inputs is one string; pass a list of prompts (one per item), e.g. [prompt].")
    if isinstance(inputs, dict):
        return ((str(key), value) for key, value in inputs.items())
    try:
        iterator = iter(inputs)
    except TypeError:
        raise ConfigurationError(f"inputs must be an iterable of prompts, not a {kind}.") from None
    return (_split(entry) for entry in iterator)


def _split(entry: Any) -> tuple[str | None, Any]:
    if isinstance(entry, tuple):
        if len(entry) != 2:
            raise ConfigurationError(f"A batch input pair must be (key, prompt); got a tuple of {len(entry)}.")
        key, value = entry
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise ConfigurationError(f"A batch item's key must be a string or an int, not {type(key).__name__}.")
        return str(key), value
    return None, entry


def normalise_inputs(inputs: Any) -> Inputs:
    """The inputs as ``(key, input)`` pairs in their order; :class:`ConfigurationError` names the first bad one."""
    result: Inputs = []
    seen: dict[str, int] = {}
    given: set[str] = set()
    for number, (key, value) in enumerate(_pairs(inputs)):
        where = f"Input {number}" + (f" (key {key!r})" if key is not None else "")
        value = _check_input(value, where)
        if key is not None:
            if not key or len(key) > _MAX_KEY or any(ord(c) < 32 for c in key):
                raise ConfigurationError(f"{where}: a key must be 1 to {_MAX_KEY} printable characters.")
            if key in given:
                raise ConfigurationError(f"Key {key!r} is given to more than one input; keys name items, so each "
                                         "must be unique.")
            given.add(key)
        else:
            base = input_key(value)
            seen[base] = seen.get(base, 0) + 1
            key = base if seen[base] == 1 else f"{base}#{seen[base]}"
        result.append((key, value))
    return result


def prompt_of(value: Any, limit: int = 500) -> str:
    """A short text of an input, for run records and error lines."""
    if isinstance(value, str):
        return value[:limit]
    texts: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [str(part.get("text", "")) for part in content if isinstance(part, dict)]
    return " ".join(texts)[:limit]
