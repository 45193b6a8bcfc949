"""What one request may ask of the server, so that no input can crash it, stall its event loop or grow its memory.

Every limit answers a clear 4xx in the OpenAI error shape, naming the parameter and the flag that raises the limit:
a body larger than ``max_body_bytes`` (413), JSON nested deeper than ``max_depth``, a string that is not valid
Unicode (a lone UTF-16 surrogate such as ``"\\ud800"``, which JSON can spell but UTF-8 cannot carry), and a reply
longer than ``max_tokens`` deltas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import APIError, bad_request

__all__ = ["MAX_SECONDS", "Limits", "check_value", "parse_json"]

#: The longest delay a fault or a pacing option may ask for (a stall, a Retry-After, a first token): an hour.
MAX_SECONDS = 3600.0

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    """Caps on request size and on the work one request can cause.

    Args:
        max_body_bytes: the largest request body accepted (``--max-body-bytes``).
        max_depth: the deepest nesting of JSON arrays and objects accepted (``--max-json-depth``).
        max_tokens: the most text deltas one reply may have (``--max-tokens``); planning a reply takes time and
            memory in proportion to it.
        tracked_requests: how many distinct requests the ``X-Mock-Faults`` HTTP-error counts are remembered for
            (the oldest are forgotten first).
    """

    max_body_bytes: int = 8 * 1024 * 1024
    max_depth: int = 100
    max_tokens: int = 200_000
    tracked_requests: int = 10_000

    def too_large(self) -> APIError:
        return APIError(413, f"The request body is larger than this mock server accepts ({self.max_body_bytes:,} "
                        "bytes; start it with --max-body-bytes to change that).", code="request_too_large")


def parse_json(raw: bytes, limits: Limits) -> Any:
    """Decode a JSON request body, rejecting what the rest of the server could not handle, with a 400 naming it."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _too_deep(limits, None) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"We could not parse the JSON body of your request ({exc}). Send valid JSON with "
                          "Content-Type: application/json.") from None
    check_value(value, limits)
    return value


def check_value(value: Any, limits: Limits) -> None:
    """Walk ``value`` (without recursion) and reject nesting past the limit and strings UTF-8 cannot encode."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise _not_unicode(path, node)
        elif isinstance(node, dict):
            if depth >= limits.max_depth:
                raise _too_deep(limits, path)
            children = []
            for key, item in node.items():
                child = f"{path}.{key}" if path else str(key)
                if _SURROGATE.search(key):
                    raise _not_unicode(path or None, key, what="a key")
                children.append((item, child, depth + 1))
            stack.extend(reversed(children))  # report the first problem in document order
        elif isinstance(node, list):
            if depth >= limits.max_depth:
                raise _too_deep(limits, path)
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in reversed(list(enumerate(node))))


def _not_unicode(param: str | None, text: str, *, what: str = "a string") -> APIError:
    found = _SURROGATE.search(text)
    char = f"\\u{ord(found.group()):04x}" if found else "?"
    where = f"'{param}'" if param else "the request body"
    return bad_request(f"Invalid {where}: {what} contains a lone UTF-16 surrogate ({char}), which is not valid "
                       "Unicode. Send UTF-8 text (a surrogate pair is fine; half of one is not).",
                       param=param or None, code="invalid_value")


def _too_deep(limits: Limits, param: str | None) -> APIError:
    where = f" at '{param}'" if param else ""
    return bad_request(f"The JSON body is nested too deeply{where}: this mock server accepts at most "
                       f"{limits.max_depth} levels of arrays and objects (start it with --max-json-depth to change "
                       "that).", param=param or None, code="invalid_value")
