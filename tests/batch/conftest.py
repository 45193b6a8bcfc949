"""The batch tests use the core tests' stores (SQLite and a real redis-server)."""

from __future__ import annotations

from ..core.conftest import Backend, backend, redis_server, store

__all__ = ["Backend", "backend", "redis_server", "store"]
