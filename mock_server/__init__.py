"""A local OpenAI-compatible Responses server for developing and testing long-running agent clients.

It reproduces background mode (``background=true``, polling, SSE replay with ``starting_after``, cancel), keeps
conversation state for ``previous_response_id``, persists to SQLite with ``--db``, and injects faults on demand:
dropped or stalled streams, failed or incomplete responses, 429/500/503 answers, an expired resume window, SSE frames
split inside multi-byte characters, some also for a fraction of responses (``fail_rate``, ``drop_rate``,
``http_429_rate``). It limits requests and tokens per minute per API key (``--rate-limit-rpm``, ``--rate-limit-tpm``)
with the service's ``x-ratelimit-*`` headers. It plays agent runs as well (reasoning summaries, web searches with
citations, code cells, function calls answered by ``function_call_output``, MCP approvals), chosen by the request's
tools or scripted step by step. Its output is deterministic, so tests can predict it.

Modules: ``app`` (routes), ``service`` (responses held), ``runs`` (one response's events), ``records`` (the
Response object), ``validation`` and ``tools`` (request checks), ``legs`` and ``trajectory`` (what an agent leg
does), ``items`` (non-message output items), ``answer`` (the answer's deltas and citations), ``generation`` (text),
``faults`` and ``http_faults`` (injected interruptions), ``ratelimit`` (per-key budgets, as the service's),
``persistence``, ``server``.

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
