"""Approvals: a run that waits for a person before a call is made.

A call to a tool declared with ``approval_mode="always_require"``, and a hosted MCP server's
``mcp_approval_request``, stop the run in the ``waiting`` status: its continuation token is ``None`` (as Agent
Framework spells "waiting for user input") and ``user_input_requests`` lists what needs an answer. Answering every
request (``request.approve()`` / ``request.reject(reason)``) continues the run in the background. The requests are
kept in the run's record, so they can be answered after a kernel restart or from another process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._contents import arguments_of

__all__ = ["ApprovalRequest"]


class ApprovalRequest:
    """One call waiting for a person's decision: what would be called, with which arguments.

    ``type`` is Agent Framework's name for it (``function_approval_request``); ``kind`` says whether it is one of
    the agent's functions (``function``) or a hosted MCP server's tool (``mcp``).
    """

    type = "function_approval_request"

    def __init__(self, call: dict[str, Any], answer: Callable[[str, bool, str | None], None]) -> None:
        self.id: str = str(call.get("call_id") or call.get("id"))
        self.kind: str = str(call.get("kind", "function"))
        self.name: str = str(call.get("name"))
        self.arguments: str = str(call.get("arguments") or "{}")
        self.server_label: str | None = call.get("server_label")
        self._answer = answer

    def parse_arguments(self) -> dict[str, Any]:
        return arguments_of(self.arguments)

    def approve(self) -> None:
        """Allow the call; once every request is answered, the run goes on."""
        self._answer(self.id, True, None)

    def reject(self, reason: str | None = None) -> None:
        """Refuse the call (the model is told, with the reason); once every request is answered, the run goes on."""
        self._answer(self.id, False, reason)

    def __repr__(self) -> str:
        where = f" on {self.server_label}" if self.server_label else ""
        return f"ApprovalRequest({self.name}({self.arguments}){where}, id={self.id!r})"


def approval_requests(response: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``mcp_approval_request`` items of a Response object."""
    return [item for item in (response or {}).get("output") or []
            if isinstance(item, dict) and item.get("type") == "mcp_approval_request"]


def decided_output(call: dict[str, Any]) -> dict[str, Any]:
    """The input item that answers a call of the round: its output, or the MCP approval decision."""
    if call.get("kind") == "mcp":
        item: dict[str, Any] = {"type": "mcp_approval_response", "approval_request_id": call["id"],
                                "approve": call.get("approval") == "approved"}
        if call.get("reason"):
            item["reason"] = call["reason"]
        return item
    return {"type": "function_call_output", "call_id": call["call_id"], "output": call["output"]}


def rejection(reason: str | None) -> str:
    return "The user did not approve this call" + (f": {reason}" if reason else ".")
