"""agent-nb: run long AI-agent tasks from Jupyter with background responses that resume exactly.

The library face is Agent Framework's: ``OpenAIResponsesClient(model_id=...).as_agent(...)``, ``agent.run(...,
options={"background": True})`` and ``continuation_token``. Every background run is recorded in a :class:`RunStore`
so that it survives a dropped connection and a restarted kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._agent import Agent, AgentSession, OpenAIResponsesClient
from ._client import ResponsesClient, RetryPolicy
from ._contents import Content
from ._errors import (
    AgentNBError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionLost,
    InvalidContinuationToken,
    RunError,
    RunExpired,
    RunFailed,
    RunNotFound,
    ServiceUnavailable,
    StoredRunNotFound,
    StoreError,
    StoreWarning,
    ToolOutputsUnknown,
    ToolRoundsExceeded,
)
from ._run import BackgroundRun
from ._store import RedisRunStore, RunRecord, RunStore, SQLiteRunStore, default_store
from ._token import ContinuationToken
from ._tools import FunctionTool, tool
from ._updates import AgentResponse, AgentResponseUpdate

if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext agent_nb`` registers ``%%agent``, ``%agent`` and ``%%agent_batch`` (the notebook layer is imported
    only now)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext agent_nb`` removes the magics."""
    from .notebook import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "APIError",
    "Agent",
    "AgentNBError",
    "AgentResponse",
    "AgentResponseUpdate",
    "AgentSession",
    "AuthenticationError",
    "BackgroundRun",
    "BadRequestError",
    "ConfigurationError",
    "ConnectionLost",
    "Content",
    "ContinuationToken",
    "FunctionTool",
    "InvalidContinuationToken",
    "OpenAIResponsesClient",
    "RedisRunStore",
    "ResponsesClient",
    "RetryPolicy",
    "RunError",
    "RunExpired",
    "RunFailed",
    "RunNotFound",
    "RunRecord",
    "RunStore",
    "SQLiteRunStore",
    "ServiceUnavailable",
    "StoreError",
    "StoreWarning",
    "StoredRunNotFound",
    "ToolOutputsUnknown",
    "ToolRoundsExceeded",
    "__version__",
    "default_store",
    "load_ipython_extension",
    "tool",
    "unload_ipython_extension",
]
