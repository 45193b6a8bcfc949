"""How an item's attempt ended, as the ledger records it, and whether another attempt makes sense."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .._errors import APIError, AuthenticationError, BadRequestError, ConnectionLost, RunError, RunNotFound

__all__ = ["Outcome", "error_of", "of_exception", "of_response"]

#: Codes of failed responses that another attempt would meet again.
_FINAL_CODES = ("invalid_prompt", "invalid_image", "invalid_request", "invalid_base64_image", "invalid_image_url",
                "image_too_large", "image_too_small", "unsupported_image_media_type", "empty_image_file",
                "image_content_policy_violation", "image_parse_error", "content_filter")
UNKNOWN_FATE = "unknown_fate"


class Outcome(NamedTuple):
    """An attempt's end: the item's status, its error (``{"code", "message"}``), whether to try again, and whether
    that costs an attempt (a rate limit does not: the batch slows down instead)."""

    status: str
    error: dict[str, Any] | None = None
    retry: bool = False
    free: bool = False


def error_of(code: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def of_response(response: Mapping[str, Any]) -> Outcome:
    """The outcome of a response that reached a final status."""
    status = str(response.get("status"))
    if status == "completed":
        return Outcome("completed")
    if status == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        message = f"The response ended incomplete ({reason or 'no reason given'})."
        return Outcome("incomplete", error_of("incomplete", message))
    if status == "cancelled":
        return Outcome("cancelled", error_of("cancelled", "The run was cancelled."))
    error = response.get("error") if isinstance(response.get("error"), dict) else {}
    code = error.get("code") if error else None
    message = str((error or {}).get("message") or "the service gave no reason")
    return Outcome("failed", error_of(code, f"The response failed: {message}"), retry=code not in _FINAL_CODES)


def of_exception(exc: BaseException) -> Outcome:
    """The outcome of an attempt that raised instead of ending."""
    if isinstance(exc, ConnectionLost) and exc.token is None:
        return Outcome("failed", error_of(UNKNOWN_FATE, f"{exc} It was not started again; batch.retry_failed() "
                                          "starts it again."))
    if isinstance(exc, RunNotFound):
        return Outcome("failed", error_of("not_found", str(exc)), retry=True)
    if isinstance(exc, AuthenticationError):
        return Outcome("failed", error_of(exc.code or "authentication", str(exc)))
    if isinstance(exc, BadRequestError):
        return Outcome("failed", error_of(exc.code or f"http_{exc.status_code}", str(exc)))
    if isinstance(exc, APIError) and exc.status_code == 429 and exc.code != "insufficient_quota":
        return Outcome("failed", error_of(exc.code or "rate_limit_exceeded", str(exc)), retry=True, free=True)
    if isinstance(exc, APIError):
        return Outcome("failed", error_of(exc.code or f"http_{exc.status_code}", str(exc)),
                       retry=exc.status_code == 0 or exc.status_code >= 500 or exc.status_code == 429)
    if isinstance(exc, RunError):
        return Outcome("failed", error_of(type(exc).__name__, str(exc)))
    return Outcome("failed", error_of(type(exc).__name__, f"{type(exc).__name__}: {exc}"))
