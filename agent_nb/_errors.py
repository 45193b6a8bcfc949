"""Every error agent-nb raises, in one hierarchy.

::

    AgentNBError
    ├── ConfigurationError            no usable endpoint or credentials, or a bad option
    ├── InvalidContinuationToken      malformed, truncated or foreign token (also a ValueError)
    ├── APIError                      the service answered an error status
    │   ├── AuthenticationError       401/403: the key is missing or wrong
    │   ├── BadRequestError           400/404/409/422 about the request itself
    │   └── ServiceUnavailable        429/5xx still failing after the retry budget
    ├── RunError                      about one run; ``response_id`` says which
    │   ├── RunNotFound               the service does not know the response (wrong id, deleted, or expired)
    │   ├── RunExpired                the response exists but can no longer be streamed or retrieved
    │   ├── RunFailed                 the run ended ``failed``; ``code`` and ``message`` are the service's
    │   ├── ToolRoundsExceeded        the model kept calling tools past ``max_tool_rounds``
    │   ├── ToolOutputsUnknown        it is unknown whether a tool round's outputs were submitted
    │   └── ConnectionLost            the stream could not be resumed within the retry budget; ``token`` resumes it
    ├── StoreError                    the run store could not be read or written
    │   └── StoredRunNotFound         no run with that id in the store
    └── StoreWarning                  a warning, not raised: a run went on although its record could not be written

Messages are written to be read by the person at the notebook: what happened, to what, and what to do next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._token import ContinuationToken

__all__ = [
    "APIError",
    "AgentNBError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectionLost",
    "InvalidContinuationToken",
    "RunError",
    "RunExpired",
    "RunFailed",
    "RunNotFound",
    "ServiceUnavailable",
    "StoreError",
    "StoreWarning",
    "StoredRunNotFound",
    "ToolOutputsUnknown",
    "ToolRoundsExceeded",
]


class AgentNBError(Exception):
    """Base class of every error agent-nb raises."""


class ConfigurationError(AgentNBError):
    """The client cannot be set up: no endpoint, conflicting settings, or a bad option value."""


class InvalidContinuationToken(AgentNBError, ValueError):
    """A continuation token could not be read: malformed, truncated, or not an agent-nb or Agent Framework token."""


class APIError(AgentNBError):
    """The service answered with an error status."""

    def __init__(self, message: str, *, status_code: int, code: str | None = None, param: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.param = param
        self.body = body


class AuthenticationError(APIError):
    """401/403: the API key is missing, wrong, or not allowed to do this."""


class BadRequestError(APIError):
    """The service rejected the request itself (400, 404, 409, 422)."""


class ServiceUnavailable(APIError):
    """429 or 5xx answers went on past the retry budget."""


class RunError(AgentNBError):
    """An error about one run; ``response_id`` names it."""

    def __init__(self, message: str, *, response_id: str | None = None) -> None:
        super().__init__(message)
        self.response_id = response_id


class RunNotFound(RunError):
    """The service has no response with this id: wrong id, deleted, or past its retention."""


class RunExpired(RunError):
    """The response exists, but it can no longer be streamed (or retrieved): its window has passed."""


class RunFailed(RunError):
    """The run ended with status ``failed``; ``code`` and ``error_message`` are the service's."""

    def __init__(self, message: str, *, response_id: str | None = None, code: str | None = None,
                 error_message: str | None = None, text: str = "") -> None:
        super().__init__(message, response_id=response_id)
        self.code = code
        self.error_message = error_message
        self.text = text


class ToolRoundsExceeded(RunError):
    """The model asked for tool calls round after round, past ``max_tool_rounds``: a runaway loop was stopped."""


class ToolOutputsUnknown(RunError):
    """A process stopped while submitting a tool round's outputs, so whether the service got them is unknown.

    agent-nb never submits outputs twice; the run is marked ``lost`` with this reason.
    """


class ConnectionLost(RunError):
    """The stream dropped and could not be resumed within the retry budget.

    ``token`` is the last continuation token received: pass it as ``options={"continuation_token": token}`` (or
    click Resume) to continue exactly where the stream stopped. ``text`` is what had arrived.
    """

    def __init__(self, message: str, *, token: ContinuationToken | None, text: str = "",
                 cause: BaseException | None = None) -> None:
        super().__init__(message, response_id=token.response_id if token else None)
        self.token = token
        self.text = text
        self.__cause__ = cause


class StoreError(AgentNBError):
    """The run store could not be opened, read or written."""


class StoredRunNotFound(StoreError, KeyError):
    """No run with this id is in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StoreWarning(AgentNBError, UserWarning):
    """Issued (with :func:`warnings.warn`), not raised: a run's record could not be written, but the run went on.

    The run's outcome comes from the service, so a full disk or a lost Redis never turns a completed run into an
    exception; the run's ``store_error`` holds the failure. ``-W error::agent_nb.StoreWarning`` makes it an error.
    """
