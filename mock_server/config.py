"""Server-wide settings, shared by the CLI, :func:`mock_server.serve` and the app factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .faults import FaultSpec
from .generation import GenerationOptions, ReplyScript
from .limits import Limits
from .replay import ReplayLibrary

DEFAULT_MODELS = ("mock-model", "gpt-4.1", "gpt-4o-mini", "gpt-5", "o3", "o4-mini")


@dataclass
class ServerConfig:
    """Everything the server needs to know at start-up.

    Args:
        options: default pace and shape of generated replies.
        faults: faults applied to every response created (changeable at run time through ``/mock/faults``).
        script: exact replies for given prompts.
        db: SQLite file that keeps responses across restarts; ``None`` keeps them in memory.
        api_key: when set, requests must send ``Authorization: Bearer <api_key>``.
        api_keys: more accepted keys, or ``re:PATTERN`` patterns (for rotating bearer tokens).
        webhook_urls: where to POST an event when a background response ends (see :mod:`mock_server.webhooks`).
        webhook_secret: the ``whsec_...`` secret webhooks are signed with.
        webhook_faults: faults of webhook deliveries (``delay=S,drop=N,duplicate,reorder=S,bad_signature``).
        replay: recorded runs to serve instead of generated ones (see :mod:`mock_server.replay`).
        poll_retention: seconds a finished response can still be retrieved (the service keeps about 10 minutes).
        stream_retention: seconds a finished response can still be streamed again (the service allows 5 minutes).
        limits: caps on request sizes and on the work one request may cause.
        rate_limit_rpm: requests per minute each API key may make (``None``/0: unlimited; see
            :mod:`mock_server.ratelimit`; changeable at run time through ``/mock/rate_limits``).
        rate_limit_tpm: tokens per minute each API key's creates may cost (``None``/0: unlimited).
    """

    options: GenerationOptions = field(default_factory=GenerationOptions)
    faults: FaultSpec = field(default_factory=FaultSpec)
    script: ReplyScript | None = None
    db: Path | None = None
    api_key: str | None = None
    api_keys: tuple[str, ...] = ()
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_faults: str = ""
    replay: ReplayLibrary | None = None
    poll_retention: float = 600.0
    stream_retention: float = 300.0
    models: tuple[str, ...] = DEFAULT_MODELS
    limits: Limits = field(default_factory=Limits)
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None
