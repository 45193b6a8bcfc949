"""What the mock agent does in one response ("leg"): reason, search, run code, call functions, ask for approval, answer.

A trajectory is a list of steps, each a small JSON object:

``{"reasoning": "text" | [parts]}``, ``{"search": "query", "sources": [urls]}``, ``{"open_page": url}``,
``{"find_in_page": "pattern", "url": url}``, ``{"code": "source", "logs": "output"}``,
``{"call": "name", "arguments": {...}}``, ``{"approval": "name", "server_label": "label", "arguments": {...}}``,
``{"answer": "text", "citations": [{"url": ..., "title": ..., "text": "the cited words"}]}``.

A script (metadata ``mock_agent`` or a ``--script`` entry's ``"agent"``) is one list split into legs after each run
of calls or approvals: the first response plays the first leg, the follow-up that carries the outputs plays the
next, and so on. ``{output}`` (or ``{output:name}``) in an answer stands for the function's output. Without a script
the request decides: declared functions are called first (with arguments valid against their schemas) and the
answer after their outputs uses them; web search tools give searches and citations, ``code_interpreter`` a code
cell, ``reasoning.summary`` (or a deep-research model) a streamed reasoning summary. Everything is a function of
the conversation and the seed.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .schema_values import schema_value
from .tools import AgentParams

_STOPS = ("call", "approval")
_STEP_KEYS = frozenset({"reasoning", "search", "open_page", "find_in_page", "code", "call", "approval", "answer",
                        "mcp_call"})


@dataclass(frozen=True)
class LegContext:
    """What the follow-up request answers: the outputs of the previous leg's calls and approvals."""

    outputs: list[tuple[str, str]]  # (function name, output)
    approvals: list[tuple[dict[str, Any], bool, str | None]]  # (approval request item, approve, reason)


def parse_script(text: str, *, param: str) -> list[dict[str, Any]]:
    """A trajectory script from JSON text, checked step by step."""
    try:
        steps = json.loads(text)
    except ValueError:
        raise bad_request(f"Invalid '{param}': expected a JSON array of trajectory steps.", param=param) from None
    return check_script(steps, param=param)


def check_script(steps: object, *, param: str) -> list[dict[str, Any]]:
    if not isinstance(steps, list) or not steps:
        raise bad_request(f"Invalid '{param}': expected a non-empty JSON array of trajectory steps.", param=param)
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or len(_STEP_KEYS & step.keys()) != 1:
            raise bad_request(f"Invalid '{param}' step {i}: each step is an object with exactly one of "
                              f"{', '.join(sorted(_STEP_KEYS))}; got {json.dumps(step)[:80]}.", param=param)
        if "call" in step and not isinstance(step.get("arguments", {}), dict):
            raise bad_request(f"Invalid '{param}' step {i}: 'arguments' must be an object.", param=param)
    return steps


def split_legs(script: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The script's legs: each ends after a run of calls or approvals (or with the script)."""
    legs: list[list[dict[str, Any]]] = [[]]
    for i, step in enumerate(script):
        legs[-1].append(step)
        stops = any(k in step for k in _STOPS)
        next_stops = i + 1 < len(script) and any(k in script[i + 1] for k in _STOPS)
        if stops and not next_stops and i + 1 < len(script):
            legs.append([])
    return legs


def plan_leg(*, model: str, agent: AgentParams, rng: random.Random, prompt: str, context: LegContext,
             script_leg: list[dict[str, Any]] | None, profile: str) -> list[dict[str, Any]]:
    """The steps of this leg; the last is the answer unless the leg ends waiting for outputs or an approval."""
    if script_leg is not None:
        return [_substitute(step, context) for step in script_leg]
    steps: list[dict[str, Any]] = []
    deep = profile == "deep_research" or "deep-research" in model
    if deep or (agent.reasoning or {}).get("summary"):
        steps.append({"reasoning": _reasoning_parts(rng, prompt, 2 if deep else 1)})
    if context.approvals:
        return steps + _after_approvals(context)
    if context.outputs:
        return [*steps, {"answer": None, "lead": lead_text(context.outputs)}]
    calls = _calls(agent, rng, prompt)
    if calls:
        return steps + calls
    approval = _mcp_approval(agent, rng)
    if approval and "approval" in approval:
        return [*steps, approval]
    if approval:
        steps.append(approval)  # a call that needs no approval is made at once
    citations: list[dict[str, Any]] = []
    if agent.has("web_search") or deep:
        searches, citations = _research(rng, prompt, 12 if deep else 3)
        steps += searches
    if agent.has("code_interpreter") or deep:
        steps.append(_code_cell(rng))
        if deep:
            steps.append({"reasoning": _reasoning_parts(rng, prompt, 1)})
    return [*steps, {"answer": None, "citations": citations}]


def _substitute(step: dict[str, Any], context: LegContext) -> dict[str, Any]:
    if not isinstance(step.get("answer"), str):
        return step
    outputs = dict(context.outputs)
    first = context.outputs[0][1] if context.outputs else ""
    text = re.sub(r"\{output:([A-Za-z0-9_-]+)\}", lambda m: outputs.get(m.group(1), ""), step["answer"])
    return {**step, "answer": text.replace("{output}", first)}


def _calls(agent: AgentParams, rng: random.Random, prompt: str) -> list[dict[str, Any]]:
    functions = agent.functions()
    choice = agent.tool_choice
    if not functions or choice == "none":
        return []
    if isinstance(choice, dict) and choice.get("type") == "function":
        functions = [f for f in functions if f["name"] == choice["name"]]
    elif isinstance(choice, dict):
        return []
    count = min(2, len(functions)) if agent.parallel_tool_calls and len(functions) > 1 else 1
    chosen = rng.sample(functions, count)
    return [{"call": f["name"], "arguments": schema_value(f["parameters"], rng, strict=bool(f["strict"]),
                                                          prompt=prompt) or {}}
            for f in chosen]


def _mcp_approval(agent: AgentParams, rng: random.Random) -> dict[str, Any] | None:
    for tool in agent.tools:
        if tool["type"] != "mcp":
            continue
        allowed = tool.get("allowed_tools")
        name = allowed[0] if isinstance(allowed, list) and allowed and isinstance(allowed[0], str) else "fetch"
        arguments = {"query": rng.choice(("pricing", "release notes", "quarterly report"))}
        if tool.get("require_approval") == "never":
            return {"mcp_call": name, "server_label": tool["server_label"], "arguments": arguments,
                    "output": f"{name} returned 3 results for {arguments['query']!r}."}
        return {"approval": name, "server_label": tool["server_label"], "arguments": arguments}
    return None


def _after_approvals(context: LegContext) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    notes = []
    for request, approve, reason in context.approvals:
        if approve:
            arguments = json.loads(request.get("arguments") or "{}")
            output = f"{request['name']} returned 3 results for {json.dumps(arguments, ensure_ascii=False)}."
            steps.append({"mcp_call": request["name"], "server_label": request.get("server_label", "mcp"),
                          "arguments": arguments, "output": output, "approval_request_id": request["id"]})
            notes.append(f"{request['name']} was approved: {output}")
        else:
            notes.append(f"{request['name']} was not approved" + (f" ({reason})" if reason else "") +
                         ", so I answered without it.")
    return [*steps, {"answer": None, "lead": " ".join(notes) + "\n\n"}]


def lead_text(outputs: list[tuple[str, str]]) -> str:
    return "".join(f"Using {name}: {output}\n\n" for name, output in outputs)


_TOPICS = ("competitor pricing", "market share", "launch timeline", "customer reviews", "regulatory filings",
           "analyst forecasts", "supply chain", "earnings call")
_SITES = ("example.com", "example.org", "example.net", "contoso.com", "fabrikam.com")


def _reasoning_parts(rng: random.Random, prompt: str, count: int) -> list[str]:
    topic = " ".join(re.findall(r"\w+", prompt)[:5]) or "the request"
    openers = ("**Planning the research**\n\nI need to find", "**Checking the sources**\n\nI should compare",
               "**Drafting the report**\n\nI will summarise")
    return [f"{openers[i % len(openers)]} {rng.choice(_TOPICS)} for {topic}, then {rng.choice(_TOPICS)}."
            for i in range(count)]


def _research(rng: random.Random, prompt: str, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    words = re.findall(r"\w+", prompt)[:4]
    steps: list[dict[str, Any]] = []
    pages: list[tuple[str, str]] = []
    for i in range(count):
        topic = rng.choice(_TOPICS)
        url = f"https://{rng.choice(_SITES)}/{topic.replace(' ', '-')}-{i + 1}"
        title = f"{topic.capitalize()} ({' '.join(words) or 'overview'})"
        kind = i % 3 if count > 3 else i
        if kind == 0:
            steps.append({"search": " ".join([*words, topic]), "sources": [url]})
        elif kind == 1:
            steps.append({"open_page": url})
            pages.append((url, title))
        else:
            steps.append({"find_in_page": topic.split()[0], "url": url})
            pages.append((url, title))
    return steps, [{"url": url, "title": title} for url, title in pages[:4]]


def _code_cell(rng: random.Random) -> dict[str, Any]:
    values = [rng.randint(80, 140) for _ in range(4)]
    code = ("import statistics\n"
            f"prices = {values}\n"
            "print(f'mean={statistics.mean(prices):.1f} spread={max(prices) - min(prices)}')\n")
    mean = sum(values) / len(values)
    return {"code": code, "logs": f"mean={mean:.1f} spread={max(values) - min(values)}\n"}


def answer_with_citations(deltas: list[str], citations: list[dict[str, Any]]
                          ) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Put each citation into the answer: on the cited words if given, else as a ``([title](url))`` marker.

    Returns the deltas and, for each annotation, the index of the delta after which it is announced.
    """
    if not citations:
        return deltas, []
    original = "".join(deltas)
    on_words = [c for c in citations if isinstance(c.get("text"), str) and c["text"] and c["text"] in original]
    markers = [c for c in citations if c not in on_words]
    slots: dict[int, list[dict[str, Any]]] = {}
    for n, c in enumerate(markers):
        slot = max(0, (len(deltas) * (n + 1)) // (len(markers) + 1) - 1) if deltas else -1
        # After the end of the sentence it falls in, as the service places them.
        while 0 <= slot < len(deltas) - 1 and not deltas[slot].rstrip().endswith((".", "!", ";")):
            slot += 1
        slots.setdefault(slot, []).append(c)
    result: list[str] = []
    annotations: list[tuple[int, dict[str, Any]]] = []
    offset = 0
    for i in range(-1, len(deltas)):
        if i >= 0:
            result.append(deltas[i])
            offset += len(deltas[i])
        for citation in slots.get(i, ()):
            link = f"([{citation.get('title') or citation['url']}]({citation['url']}))"
            spaced = not result or result[-1][-1:].isspace()
            marker = f"{link} " if spaced else f" {link}"
            result.append(marker)
            start = offset + (0 if spaced else 1)
            annotations.append((len(result) - 1, _annotation(citation, start, start + len(link))))
            offset += len(marker)
    text = "".join(result)
    for citation in on_words:
        start = text.find(citation["text"])
        end = start + len(citation["text"])
        annotations.append((_delta_at(result, end), _annotation(citation, start, end)))
    annotations.sort(key=lambda pair: (pair[0], pair[1]["start_index"]))
    return result, annotations


def _delta_at(deltas: list[str], end: int) -> int:
    total = 0
    for i, delta in enumerate(deltas):
        total += len(delta)
        if total >= end:
            return i
    return len(deltas) - 1


def _annotation(citation: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    return {"type": "url_citation", "start_index": start, "end_index": end, "url": str(citation["url"]),
            "title": str(citation.get("title") or citation["url"])}
