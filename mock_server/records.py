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
    item_status: str | None = None

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
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + self.output_tokens,
        }

    def message_item(self, *, status: str | None = None, with_content: bool = True) -> dict[str, Any]:
        content = [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}] if with_content \
            else []
        return {
            "type": "message",
            "id": self.message_id,
            "status": status or self.item_status or "completed",
            "role": "assistant",
            "content": content,
        }

    def to_json(self) -> dict[str, Any]:
        """The Response object as ``GET /v1/responses/{id}`` returns it."""
        output = [self.message_item()] if self.item_status is not None else []
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
            "parallel_tool_calls": True,
            "previous_response_id": self.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": self.store,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage() if self.terminal else None,
            "user": None,
        }
