"""Runs in Redis: for a team or a cluster, where kernels on several machines share one record of their runs."""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import StoreError
from ._base import RunStore, status_filter
from ._record import TERMINAL, RunRecord
from ._redis_ledger import RedisLedger

__all__ = ["DEFAULT_URL", "RedisRunStore", "redact_url"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_CHUNK = 200  # runs read per round trip when listing or pruning

#: RunStore._advance in one atomic script. KEYS[1] is the run's hash; ARGV[1] the sequence number the stored one must
#: be below and ARGV[2] the response id the stored one must be ("" for no condition); the rest are field/value pairs,
#: JSON-encoded like every field of the hash.
_FINISHED = " or ".join(f"status == '{json.dumps(status)}'" for status in sorted(TERMINAL))
_ADVANCE = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if {_FINISHED} then return 0 end
if ARGV[1] ~= '' then
  local stored = redis.call('HGET', KEYS[1], 'sequence_number')
  if stored and stored ~= 'null' and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'response_id') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
"""


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for messages and ``repr``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unreadable Redis URL>"


def _passwords(url: str) -> list[str]:
    """The passwords a Redis URL carries (in its user info or its query), to keep them out of messages."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *(v for k, v in parse_qsl(parts.query) if k.lower() == "password")]
    except ValueError:
        return []
    return [secret for secret in found if secret]


def _client_url(client: Any) -> str:
    """A password-free description of where a caller's client connects."""
    try:
        kwargs = client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    except (AttributeError, TypeError):
        return f"a {type(client).__name__}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _load(value: Any) -> Any:
    return None if value is None else json.loads(value)


class RedisRunStore(RunStore):
    """Runs in Redis (redis-py; ``pip install redis``).

    Each run is a hash at ``{prefix}:run:{run_id}`` whose fields are the record's, each JSON-encoded; the sorted set
    ``{prefix}:runs`` indexes runs by ``created_at``, and the hash ``{prefix}:by_response`` maps a response id to the
    run recorded for it last. A checkpoint is one Lua script (check, then HSET), which Redis runs atomically.

    Args:
        url: the server; defaults to ``$AGENT_NB_REDIS_URL``, else ``redis://127.0.0.1:6379/0``.
        client: a ready ``redis.Redis`` to use instead of ``url`` (it is not closed by :meth:`close`).
        prefix: the start of every key, so that several stores can share one database.
    """

    def __init__(self, url: str | None = None, *, client: Any = None, prefix: str = "agent_nb") -> None:
        try:
            import redis
        except ImportError:
            raise StoreError("RedisRunStore needs the redis package: pip install redis (or agent-nb[redis]).") from None
        self._redis = redis
        self.prefix = prefix
        self._index = f"{prefix}:runs"
        self._by_response = f"{prefix}:by_response"
        self._closed = False
        self._secrets: builtins.list[str] = []
        self._owns_client = client is None
        if client is not None:
            self.url = _client_url(client)
            self._client = client
            self._advance_lua = client.register_script(_ADVANCE)  # sent to the server on first use
            return
        raw = url or os.environ.get("AGENT_NB_REDIS_URL") or DEFAULT_URL
        self.url = redact_url(raw)
        self._secrets = _passwords(raw)
        try:
            self._client = redis.Redis.from_url(raw, socket_connect_timeout=5, socket_timeout=10)
        except ValueError as exc:
            raise StoreError(f"{self.url!r} is not a Redis URL ({self._scrub(exc)}); use redis://host:port/db, "
                             "rediss://… or unix://….") from None
        self._advance_lua = self._client.register_script(_ADVANCE)

    def __repr__(self) -> str:
        return f"RedisRunStore({self.url!r}, prefix={self.prefix!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def _scrub(self, exc: BaseException) -> str:
        message = str(exc)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    @contextmanager
    def _errors(self) -> Iterator[Any]:
        """The client; Redis errors become :class:`StoreError` naming the server (never its password)."""
        if self._closed:
            raise StoreError(f"{self} is closed.")
        try:
            yield self._client
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise StoreError(f"Cannot reach the Redis run store at {self.url} ({self._scrub(exc)}). Is the server "
                             "running? Set AGENT_NB_REDIS_URL or pass url= to use another.") from None
        except self._redis.RedisError as exc:
            raise StoreError(f"The Redis run store at {self.url} failed: {self._scrub(exc)}.") from None

    def _decode(self, data: Any) -> RunRecord | None:
        """A record from HGETALL's reply; None for a missing run (or a stray fragment of one)."""
        values = {_text(name): value for name, value in (data or {}).items()}
        if "run_id" not in values:
            return None
        try:
            return RunRecord.from_dict({name: _load(value) for name, value in values.items()})
        except (TypeError, ValueError) as exc:
            raise StoreError(f"Run {_text(values['run_id'])!r} in {self} is damaged ({exc}); delete it with "
                             "store.delete(run_id).") from None

    def ledger(self) -> RedisLedger:
        """The batches kept in this Redis database, under this store's prefix."""
        return RedisLedger(self)

    # -- RunStore ------------------------------------------------------------------------------------------------

    def add(self, record: RunRecord) -> None:
        key = self._key(record.run_id)
        values = {name: _dump(value) for name, value in record.to_dict().items()}

        def add(pipe: Any) -> None:
            if pipe.exists(key):
                raise StoreError(f"{self} already has a run '{record.run_id}'.")
            pipe.multi()
            pipe.hset(key, mapping=values)
            pipe.zadd(self._index, {record.run_id: record.created_at})
            if record.response_id is not None:
                pipe.hset(self._by_response, record.response_id, record.run_id)

        with self._errors() as client:
            client.transaction(add, key)

    def get(self, run_id: str) -> RunRecord:
        with self._errors() as client:
            record = self._decode(client.hgetall(self._key(run_id)))
        if record is None:
            raise self._not_found(run_id)
        return record

    def find(self, response_id: str) -> RunRecord | None:
        with self._errors() as client:
            run_id = client.hget(self._by_response, response_id)
            record = None if run_id is None else self._decode(client.hgetall(self._key(_text(run_id))))
        return record if record is not None and record.response_id == response_id else None

    def _newest_first(self, client: Any) -> Iterator[RunRecord]:
        start = 0
        while True:
            run_ids = client.zrevrange(self._index, start, start + _CHUNK - 1)
            if not run_ids:
                return
            pipe = client.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hgetall(self._key(_text(run_id)))
            for data in pipe.execute():
                record = self._decode(data)
                if record is not None:
                    yield record
            start += _CHUNK

    def list(self, status: str | Iterable[str] | None = None, *, limit: int | None = None) -> builtins.list[RunRecord]:
        wanted = status_filter(status)
        found: builtins.list[RunRecord] = []
        if limit is not None and limit <= 0:
            return found
        with self._errors() as client:
            for record in self._newest_first(client):
                if wanted is None or record.status in wanted:
                    found.append(record)
                    if len(found) == limit:
                        break
        return found

    def _update(self, run_id: str, fields: dict[str, Any]) -> RunRecord:
        key = self._key(run_id)
        values = {name: _dump(value) for name, value in fields.items()}

        def update(pipe: Any) -> None:
            if not pipe.exists(key):
                raise self._not_found(run_id)
            pipe.multi()
            pipe.hset(key, mapping=values)
            if fields.get("response_id") is not None:
                pipe.hset(self._by_response, fields["response_id"], run_id)
            if "created_at" in fields:
                pipe.zadd(self._index, {run_id: fields["created_at"]})
            pipe.hgetall(key)

        with self._errors() as client:
            replies = client.transaction(update, key)
        record = self._decode(replies[-1])
        if record is None:
            raise self._not_found(run_id)
        return record

    def _advance(self, run_id: str, fields: dict[str, Any], *, past: int | None,
                 response_id: str | None = None) -> bool:
        args = ["" if past is None else str(past), "" if response_id is None else _dump(response_id)]
        for name, value in fields.items():
            args += [name, _dump(value)]
        with self._errors():
            applied = self._advance_lua(keys=[self._key(run_id)], args=args)
        if applied == -1:
            raise self._not_found(run_id)
        return bool(applied)

    def _delete_if(self, client: Any, run_id: str, keep: Callable[[RunRecord], bool] | None = None) -> bool:
        """Delete a run atomically, unless it is missing or ``keep(record)`` says otherwise; say whether it was."""
        key = self._key(run_id)

        def delete(pipe: Any) -> bool:
            record = self._decode(pipe.hgetall(key))
            if record is not None and keep is not None and keep(record):
                return False
            response_id = record.response_id if record is not None else None
            mapped = pipe.hget(self._by_response, response_id) if response_id is not None else None
            pipe.multi()
            pipe.zrem(self._index, run_id)  # also drops an index entry left without its run, should there be one
            if record is None:
                return False
            pipe.delete(key)
            if response_id is not None and mapped is not None and _text(mapped) == run_id:
                pipe.hdel(self._by_response, response_id)
            return True

        return bool(client.transaction(delete, key, self._by_response, value_from_callable=True))

    def delete(self, run_id: str) -> None:
        with self._errors() as client:
            if not self._delete_if(client, run_id):
                raise self._not_found(run_id)

    def prune(self, older_than: float, *, statuses: Iterable[str] = TERMINAL) -> int:
        wanted = frozenset(statuses)
        cutoff = time.time() - older_than

        def keep(record: RunRecord) -> bool:
            return record.status not in wanted or record.updated_at >= cutoff

        with self._errors() as client:
            stale = [record.run_id for record in self._newest_first(client) if not keep(record)]
            return sum(self._delete_if(client, run_id, keep) for run_id in stale)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_client:
                self._client.close()
