"""The Response object: what is stored about one response, and its JSON as the SDKs expect it."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass
class ResponseRecord:
    """Everything needed to answer for one response and to regenerate its events after a restart."""

    id: str
    model: str
    created_at: int
    background: bool
    store: bool
    stream: bool
    input_items: list[dict[str, Any]]
    conversation: list[str]
    instructions: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    message_id: str = field(default_factory=lambda: new_id("msg"))
    options: str = ""
    faults: str = ""
    scripted: str | None = None
    status: str = "queued"
    text: str = ""
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    completed_at: int | None = None
    ended_at: float | None = None
    output_tokens: int = 0
    item_status: str | None = None  # the answer message's, once it is added
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    reasoning: dict[str, Any] | None = None
    agent_script: list[dict[str, Any]] | None = None  # the whole scripted trajectory, if any
    leg: int = 0  # which leg of the trajectory this response plays
    trajectory: list[dict[str, Any]] = field(default_factory=list)  # this leg's steps, decided at create
    output_items: list[dict[str, Any]] = field(default_factory=list)  # the items before the answer, as they stand
    annotations: list[dict[str, Any]] = field(default_factory=list)  # the answer's, announced so far
    reasoning_tokens: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResponseRecord:
        return cls(**data)

    def finish(self, status: str) -> None:
        self.status = status
        self.ended_at = time.time()
        if status == "completed":
            self.completed_at = int(self.ended_at)

    def usage(self) -> dict[str, Any]:
        input_tokens = sum(len(part.split()) for part in self.conversation) + len((self.instructions or "").split())
        return {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": input_tokens + self.output_tokens,
        }

    @property
    def message_index(self) -> int:
        """The answer message's output index: after every other item of the leg."""
        return sum(1 for step in self.trajectory if "answer" not in step)

    @property
    def has_answer(self) -> bool:
        return not self.trajectory or "answer" in self.trajectory[-1]

    def message_item(self, *, status: str | None = None, with_content: bool = True) -> dict[str, Any]:
        content = [{"type": "output_text", "text": self.text, "annotations": list(self.annotations), "logprobs": []}] \
            if with_content else []
        return {
            "type": "message",
            "id": self.message_id,
            "status": status or self.item_status or "completed",
            "role": "assistant",
            "content": content,
        }

    def to_json(self) -> dict[str, Any]:
        """The Response object as ``GET /v1/responses/{id}`` returns it."""
        output = [*self.output_items, *([self.message_item()] if self.item_status is not None else [])]
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": self.background,
            "completed_at": self.completed_at,
            "error": self.error,
            "incomplete_details": self.incomplete_details,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "metadata": self.metadata,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": self.previous_response_id,
            "reasoning": self.reasoning or {"effort": None, "summary": None},
            "store": self.store,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage() if self.terminal else None,
            "user": None,
        }
