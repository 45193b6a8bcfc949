"""Function tools across background turns: one logical run that spans several responses.

When a response of the run ends with ``function_call`` items for the agent's tools, the loop runs the functions
(concurrently; an exception becomes an error output the model sees), submits their ``function_call_output`` items as
a new background response with ``previous_response_id``, and the run follows that response next. The chain is kept
in the run's record (``RunRecord.chain``) at every step: the calls of the round, each output as soon as it is known,
and whether the outputs are being submitted. So a process killed between "tool finished" and "output submitted"
resumes without running a recorded tool again, and outputs are never submitted twice: when a process died during
the submission itself, the run is marked ``lost`` with :class:`ToolOutputsUnknown` rather than risk it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._approvals import approval_requests, decided_output, rejection
from ._errors import ToolOutputsUnknown, ToolRoundsExceeded
from ._tools import FunctionTool

if TYPE_CHECKING:
    from ._run import BackgroundRun

__all__ = ["Chain", "ToolLoop", "function_calls"]

DEFAULT_MAX_ROUNDS = 20


@dataclass
class Chain:
    """Where a run with tools stands, as its record keeps it.

    ``body`` is what every follow-up create repeats (model, instructions, tools, metadata); ``legs`` the ids of the
    responses that ended with calls; ``calls`` the latest round's calls with their outputs so far; ``step`` is
    ``"tools"`` while they run, ``"submitting"`` while their outputs are sent, ``"waiting"`` while an approval is
    pending, and empty otherwise. The first ``prefix_count`` items and ``prefix_length`` characters of the run's
    record belong to the finished responses.
    """

    body: dict[str, Any] = field(default_factory=dict)
    legs: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    step: str = ""
    rounds: int = 0
    prefix_count: int = 0
    prefix_length: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Chain:
        known = {name: value for name, value in (data or {}).items() if name in cls.__dataclass_fields__}
        return cls(**known)


#: Body fields a follow-up response does not repeat from the first one.
_PER_RESPONSE = frozenset({"input", "previous_response_id", "stream", "background", "store"})


def loop_for(tools: list[FunctionTool], body: Mapping[str, Any], chain: Mapping[str, Any] | None, *,
             max_rounds: int = DEFAULT_MAX_ROUNDS) -> ToolLoop | None:
    """The tool loop of a run: from its stored chain, or a new one when it has function tools or an MCP server (whose
    calls may wait for approval)."""
    hosted_mcp = any(isinstance(t, Mapping) and t.get("type") == "mcp" for t in body.get("tools") or ())
    if chain is None and not tools and not hosted_mcp:
        return None
    state = Chain.from_dict(chain) if chain is not None else Chain(
        body={k: v for k, v in body.items() if k not in _PER_RESPONSE})
    return ToolLoop({t.name: t for t in tools}, state, max_rounds=max_rounds)


def function_calls(response: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The ``function_call`` items of a Response object."""
    return [item for item in (response or {}).get("output") or []
            if isinstance(item, dict) and item.get("type") == "function_call"]


def output_text_of(result: Any) -> str:
    """A tool's result as the string the model reads: strings as they are, anything else as JSON."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


class ToolLoop:
    """Runs one run's tool rounds.

    Args:
        tools: the agent's function tools, by name.
        chain: the run's chain (a fresh one for a new run, the record's when resuming).
        max_rounds: how many rounds of calls a run may make before :class:`ToolRoundsExceeded` stops it.
    """

    def __init__(self, tools: Mapping[str, FunctionTool], chain: Chain, *,
                 max_rounds: int = DEFAULT_MAX_ROUNDS) -> None:
        self.tools = dict(tools)
        self.chain = chain
        self.max_rounds = max_rounds

    def continues(self, response: Mapping[str, Any] | None) -> bool:
        """Whether this response is a round of calls the loop answers (rather than the run's end)."""
        if not response or response.get("status") != "completed":
            return False
        return bool(function_calls(response) or approval_requests(dict(response)))

    def pending(self) -> list[dict[str, Any]]:
        """The round's calls waiting for a person's decision."""
        return [call for call in self.chain.calls if call.get("approval") == "pending"]

    def decide(self, run: BackgroundRun, call_id: str, approved: bool, reason: str | None) -> None:
        """Record a person's decision on a pending call."""
        for call in self.pending():
            if call.get("call_id", call.get("id")) == call_id or call.get("id") == call_id:
                call["approval"], call["reason"] = ("approved" if approved else "rejected"), reason
                if not approved and call.get("kind") != "mcp":
                    call["output"] = rejection(reason)
                self._save(run)
                return
        raise KeyError(call_id)

    async def advance(self, run: BackgroundRun, response: Mapping[str, Any]) -> dict[str, Any] | None:
        """Answer the response's calls: run what has no recorded output yet, and return the follow-up's body
        (``None`` while a call waits for approval).

        Raises:
            ToolRoundsExceeded: the run has made ``max_rounds`` rounds already.
            ToolOutputsUnknown: a process stopped while submitting this round's outputs.
        """
        chain = self.chain
        response_id = str(response.get("id"))
        if not (chain.legs and chain.legs[-1] == response_id):  # a round not seen before
            if chain.rounds >= self.max_rounds:
                raise ToolRoundsExceeded(
                    f"Run {run.run_id or response_id} asked for tools {chain.rounds + 1} rounds in a row; it was "
                    f"stopped at max_tool_rounds={self.max_rounds}. Raise max_tool_rounds if the task needs more.",
                    response_id=response_id)
            chain.legs.append(response_id)
            chain.rounds += 1
            chain.calls = [self._entry(c) for c in function_calls(response)] + [
                {"kind": "mcp", "id": r.get("id"), "name": r.get("name"), "arguments": r.get("arguments"),
                 "server_label": r.get("server_label"), "output": None, "approval": "pending"}
                for r in approval_requests(dict(response))]
            chain.step = "tools"
            self._save(run)
        elif chain.step == "submitting":
            raise ToolOutputsUnknown(
                f"Run {run.run_id or response_id} stopped while submitting the outputs of its tool calls, so it is "
                "unknown whether the service got them; agent-nb does not submit them twice. Start the run again.",
                response_id=response_id)
        if self.pending():
            chain.step = "waiting"
            self._save(run)
            return None
        chain.step = "tools"
        await asyncio.gather(*(self._invoke(run, call) for call in chain.calls
                               if call["output"] is None and call.get("kind") != "mcp"))
        chain.step = "submitting"
        self._save(run)
        return {**chain.body, "input": self.outputs(), "previous_response_id": response_id,
                "background": run.background, "store": True}

    def outputs(self) -> list[dict[str, Any]]:
        """The round's ``function_call_output`` (and ``mcp_approval_response``) items."""
        return [decided_output(call) for call in self.chain.calls]

    def submitted(self, prefix_count: int, prefix_length: int) -> None:
        """The follow-up response exists: the round is over."""
        self.chain.calls, self.chain.step = [], ""
        self.chain.prefix_count, self.chain.prefix_length = prefix_count, prefix_length

    def _entry(self, call: Mapping[str, Any]) -> dict[str, Any]:
        tool = self.tools.get(str(call.get("name")))
        entry = {"call_id": call.get("call_id"), "name": call.get("name"), "arguments": call.get("arguments"),
                 "output": None}
        if tool is not None and tool.approval_mode == "always_require":
            entry["approval"] = "pending"
        return entry

    async def _invoke(self, run: BackgroundRun, call: dict[str, Any]) -> None:
        tool = self.tools.get(str(call.get("name")))
        if tool is None:
            output = (f"Error: no tool named {call.get('name')!r} is available here; the tools are: "
                      f"{', '.join(sorted(self.tools)) or 'none'}.")
        else:
            try:
                output = output_text_of(await tool.invoke(call.get("arguments")))
            except Exception as exc:  # the model sees the failure and can recover from it
                output = f"Error: {type(exc).__name__}: {exc}"
        call["output"] = output
        self._save(run)  # each output as soon as it is known: a restart does not run this call again
        run.tool_finished(call)

    def _save(self, run: BackgroundRun) -> None:
        if run.recorder is not None:
            run.recorder.save(chain=self.chain.to_dict())
