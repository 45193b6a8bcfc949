"""The API keys the server accepts: literal keys and ``re:`` patterns, replaceable while it runs.

Several keys, or a pattern such as ``re:tok-\\d+``, let a client whose token provider rotates bearer tokens (Entra
ID on Azure) be tested: the accepted set can be swapped at run time, as a token expiring on the service would be.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Iterable

__all__ = ["KeySet"]


class KeySet:
    """Accepted bearer keys. Empty means no authentication."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._literal: tuple[bytes, ...] = ()
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self.replace(keys)

    def replace(self, keys: Iterable[str]) -> None:
        """Accept exactly these keys from now on (``re:PATTERN`` for a pattern); invalid patterns raise ValueError."""
        literal, patterns = [], []
        for key in keys:
            if key.startswith("re:"):
                try:
                    patterns.append(re.compile(key[3:]))
                except re.error as exc:
                    raise ValueError(f"--api-key {key!r} is not a valid pattern: {exc}.") from None
            elif key:
                literal.append(key.encode())
        with self._lock:
            self._literal, self._patterns = tuple(literal), tuple(patterns)

    @property
    def enabled(self) -> bool:
        return bool(self._literal or self._patterns)

    def accepts(self, authorization: bytes) -> bool:
        """Whether an ``Authorization`` header value carries an accepted key."""
        if not authorization.startswith(b"Bearer "):
            return False
        given = authorization[7:]
        with self._lock:
            literal, patterns = self._literal, self._patterns
        if any(hmac.compare_digest(given, key) for key in literal):
            return True
        text = given.decode("utf-8", "replace")
        return any(p.fullmatch(text) for p in patterns)
