"""Where a create request stands in an agent conversation: which leg it plays and what it answers.

A follow-up carries ``function_call_output`` or ``mcp_approval_response`` items for the calls and approval requests
of the previous response (by ``previous_response_id``) or of items sent inline (a client that keeps the history
itself); each must answer one of them, as the service insists. The leg and its script carry over from the previous
response, so a scripted trajectory plays on across responses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .errors import APIError, bad_request
from .records import ResponseRecord
from .tools import AgentParams
from .trajectory import LegContext, lead_text, parse_script, plan_leg, split_legs
from .validation import item_text

_ANSWERS = frozenset({"function_call_output", "mcp_approval_response"})


@dataclass(frozen=True)
class Leg:
    agent_script: list[dict[str, Any]] | None
    number: int
    trajectory: list[dict[str, Any]]


def plan_this_leg(*, model: str, agent: AgentParams, input_items: list[dict[str, Any]],
                  previous: ResponseRecord | None, metadata_script: str | None,
                  script_for_prompt: list[dict[str, Any]] | None, prompt: str, rng: random.Random,
                  profile: str) -> Leg:
    """The leg this request plays, with its trajectory decided."""
    if ("deep-research" in model or profile == "deep_research") and not (agent.has("web_search") or
                                                                          agent.has("mcp")):
        raise bad_request("Deep research models require at least one of 'web_search_preview', 'mcp', or "
                          "'file_search' tools.", param="tools", code="invalid_value")
    context, groups = _context(input_items, previous)
    own = parse_script(metadata_script, param="metadata.mock_agent") if metadata_script else None
    if groups:
        script = own if own is not None else (previous.agent_script if previous is not None else None)
        number = previous.leg + 1 if previous is not None else groups
    else:
        script = own if own is not None else script_for_prompt
        number = 0
    legs = split_legs(script) if script else []
    script_leg = legs[number] if number < len(legs) else None
    if script and script_leg is None:
        script_leg = [{"answer": None, "lead": lead_text(context.outputs)}]
    trajectory = plan_leg(model=model, agent=agent, rng=rng, prompt=prompt, context=context, script_leg=script_leg,
                          profile=profile)
    agentic = bool(agent.tools or agent.reasoning or script or context.outputs or context.approvals
                   or "deep-research" in model or profile)
    return Leg(script, number, trajectory if agentic else [])


def _context(input_items: list[dict[str, Any]], previous: ResponseRecord | None) -> tuple[LegContext, int]:
    """The outputs and approvals this request answers, and how many follow-ups the input holds."""
    known: dict[str, dict[str, Any]] = {}
    for item in (previous.output_items if previous is not None else []):
        known[item.get("call_id") or item["id"]] = item
    last_user = max((i for i, item in enumerate(input_items) if item.get("type", "message") == "message"
                     and item.get("role") == "user"), default=-1)
    outputs: list[tuple[str, str]] = []
    approvals: list[tuple[dict[str, Any], bool, str | None]] = []
    groups = 0
    in_group = False
    for index, item in enumerate(input_items):
        kind = item.get("type")
        if kind in ("function_call", "mcp_approval_request"):
            known[item.get("call_id") or item.get("id", "")] = item
        if kind not in _ANSWERS:
            in_group = False
            continue
        if index > last_user and not in_group:
            groups += 1
            outputs, approvals = [], []
        in_group = True
        if kind == "function_call_output":
            call = known.get(item["call_id"])
            if call is None or call.get("type") != "function_call":
                raise APIError(400, f"No tool call found for function call output with call_id {item['call_id']}.",
                               param="input", code=None)
            outputs.append((str(call.get("name")), item_text(item)))
        else:
            request = known.get(item["approval_request_id"])
            if request is None or request.get("type") != "mcp_approval_request":
                raise APIError(400, "No approval request found with id "
                               f"{item['approval_request_id']} for this mcp_approval_response.", param="input",
                               code=None)
            approvals.append((request, bool(item["approve"]), item.get("reason")))
    return LegContext(outputs, approvals), groups
