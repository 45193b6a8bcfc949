"""A local OpenAI-compatible Responses server for developing and testing long-running agent clients.

It reproduces background mode (``background=true``, polling, SSE replay with ``starting_after``, cancel), keeps
conversation state for ``previous_response_id``, persists to SQLite with ``--db``, and injects faults on demand:
dropped or stalled streams, failed or incomplete responses, 429/500/503 answers, an expired resume window, SSE frames
split inside multi-byte characters. Its output is deterministic, so tests can predict it.

Run it with ``python -m mock_server`` (or ``agent-nb-mock``), or in-process::

    with mock_server.serve() as url:
        client = openai.OpenAI(base_url=url, api_key="mock")
"""

from __future__ import annotations

from .app import create_app
from .config import ServerConfig
from .faults import FaultSpec
from .generation import GenerationOptions, ReplyScript
from .server import MockServer, serve

__all__ = [
    "FaultSpec",
    "GenerationOptions",
    "MockServer",
    "ReplyScript",
    "ServerConfig",
    "create_app",
    "serve",
]
