"""What every item of a batch is sent with, stored with the batch so that any process can carry it on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .._tools import FunctionTool, as_tool

if TYPE_CHECKING:
    from .._agent import Agent

__all__ = ["MODES", "BatchSpec"]

MODES = ("poll", "stream")
#: Run options that make no sense for a batch's items (each is an unattended background run of the batch's own).
_REFUSED = {"background": "every batch item is a background run",
            "continuation_token": "items are resumed by the batch itself",
            "notify": "a batch follows its items itself",
            "record": "record single runs with agent.run(..., options={'record': ...})",
            "name": "the batch's name labels its runs; pass name= to batch()"}
#: Fields compared when a batch is opened again by name: a batch is the same only if its items are asked the same
#: (how they are followed, their attempts and pace may change from one attach to the next).
_IDENTITY = ("model", "instructions", "options", "tools", "functions")


@dataclass
class BatchSpec:
    """The request every item of a batch is sent with (its input aside), and how its items are followed."""

    model: str
    instructions: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # request fields such as max_output_tokens, metadata
    tools: list[dict[str, Any]] = field(default_factory=list)  # hosted tools' declarations
    functions: list[str] = field(default_factory=list)  # names of the function tools the items may call
    mode: str = "poll"
    max_attempts: int = 3
    poll_interval: float = 2.0
    max_tool_rounds: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    endpoint: str = ""
    service: str | None = None
    #: How it was first worked, the defaults of a re-attach by name (``Batch.resume``, a worker): not its identity.
    concurrency: int = 64
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    @classmethod
    def of(cls, agent: Agent, options: Mapping[str, Any] | None, *, mode: str, max_attempts: int) -> BatchSpec:
        """The spec of a batch of ``agent`` with per-item ``options``; :class:`ConfigurationError` for bad ones."""
        if mode not in MODES:
            raise ConfigurationError(f"mode must be 'poll' or 'stream', not {mode!r}.")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be a whole number of at least 1, not {max_attempts!r}.")
        opts = dict(options or {})
        for key, why in _REFUSED.items():
            if key in opts:
                raise ConfigurationError(f"Batch option {key!r} is not allowed: {why}.")
        tools = [as_tool(t) for t in opts.pop("tools", None) or ()]
        functions = [t for t in [*agent.tools, *tools] if isinstance(t, FunctionTool)]
        hosted = [t for t in [*agent.tools, *tools] if not isinstance(t, FunctionTool)]
        labels = {str(k): str(v) for k, v in dict(opts.pop("labels", None) or {}).items()}
        poll_interval = float(opts.pop("poll_interval", 2.0))
        max_rounds = opts.pop("max_tool_rounds", None)
        spec = cls(model=str(opts.pop("model", None) or agent.model),
                   instructions=opts.pop("instructions", agent.instructions), options=opts, tools=hosted,
                   functions=[f.name for f in functions], mode=mode, max_attempts=max_attempts,
                   poll_interval=poll_interval, max_tool_rounds=int(max_rounds) if max_rounds is not None else None,
                   labels=labels, endpoint=agent.client.base_url, service=agent.client.endpoint.kind)
        try:
            json.dumps(spec.to_dict())
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"The batch's options must be JSON-serialisable, to be stored with it ({exc})."
                                     ) from None
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchSpec:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: BatchSpec) -> list[str]:
        """The fields that make ``other`` a different batch."""
        return [name for name in _IDENTITY if getattr(self, name) != getattr(other, name)]

    def request_options(self) -> dict[str, Any]:
        """The options each item's run is started with (its input aside)."""
        options = {"model": self.model, "instructions": self.instructions, **self.options}
        if self.tools:
            options["tools"] = list(self.tools)
        return options

    def estimated_tokens(self, value: Any) -> float:
        """A create's cost for a tokens-per-minute budget: input characters / 4, plus ``max_output_tokens``."""
        size = len(value) if isinstance(value, str) else len(json.dumps(value))
        return max(1.0, size / 4) + float(self.options.get("max_output_tokens") or 0)
