"""The batch ledger in Redis, for batches worked by processes on several machines.

Keys, under ``{prefix}:batch:{name}:``: ``spec`` and ``state`` (strings), ``items`` (a hash of each item's state as
JSON, its input aside), ``inputs`` (a hash of each item's input as JSON), ``pending`` (a sorted set of the keys to
send, by position), ``counts`` (items by status), ``owners`` (each owner's lease expiry) and ``owned:{owner}`` (the
keys each owner holds). ``{prefix}:batches`` maps each batch's name to its creation time. Every change of items is
one Lua script, which Redis runs atomically: a claim cannot hand an item to two owners, and a write is applied only
by the item's owner. Item states hold ``error`` and ``usage`` as JSON strings, so the scripts never re-encode them.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from ._ledger import FINAL_STATUSES, WRITABLE, BatchInfo, BatchItem, BatchLedger, owner_alive

if TYPE_CHECKING:
    from ._redis import RedisRunStore

__all__ = ["RedisLedger"]

_LUA_FINAL = "{" + ", ".join(f"[{json.dumps(s)}] = true" for s in sorted(FINAL_STATUSES)) + "}"
_SET_STATUS = """
local function set_status(st, status, counts)
  if st.status ~= status then
    redis.call('HINCRBY', counts, st.status, -1)
    redis.call('HINCRBY', counts, status, 1)
    st.status = status
  end
end
"""

#: KEYS: state, items, pending, counts, owned:{owner}. ARGV: owner, now, run ids…
_CLAIM = _SET_STATUS + """
if redis.call('GET', KEYS[1]) ~= 'open' then return {} end
local popped = redis.call('ZPOPMIN', KEYS[3], #ARGV - 2)
local out = {}
for i = 1, #popped, 2 do
  local key = popped[i]
  local st = cjson.decode(redis.call('HGET', KEYS[2], key))
  set_status(st, 'claimed', KEYS[4])
  st.owner = ARGV[1]
  st.run_id = ARGV[2 + (i + 1) / 2]
  st.response_id = cjson.null
  st.attempts = st.attempts + 1
  st.updated_at = tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], key, cjson.encode(st))
  redis.call('SADD', KEYS[5], key)
  out[#out + 1] = key
end
return out
"""

#: KEYS: items, pending, counts, owned:{owner}. ARGV: owner, now, then key and fields (JSON) pairs.
_WRITE = _SET_STATUS + f"""
local final = {_LUA_FINAL}
local applied = 0
for i = 3, #ARGV, 2 do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw then
    local st = cjson.decode(raw)
    if st.owner == ARGV[1] then
      for k, v in pairs(cjson.decode(ARGV[i + 1])) do
        if k == 'status' then set_status(st, v, KEYS[3]) else st[k] = v end
      end
      if final[st.status] or st.status == 'pending' then
        st.owner = cjson.null
        redis.call('SREM', KEYS[4], ARGV[i])
      end
      if st.status == 'pending' then redis.call('ZADD', KEYS[2], st.position, ARGV[i]) end
      st.updated_at = tonumber(ARGV[2])
      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(st))
      applied = applied + 1
    end
  end
end
return applied
"""

#: KEYS: owners, owned:{gone}, owned:{owner}, items. ARGV: gone, owner, now, force ("1": its process is dead).
_ADOPT = """
local expires = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if ARGV[4] ~= '1' and expires >= tonumber(ARGV[3]) then return {} end
local keys = redis.call('SMEMBERS', KEYS[2])
for _, key in ipairs(keys) do
  local st = cjson.decode(redis.call('HGET', KEYS[4], key))
  st.owner = ARGV[2]
  redis.call('HSET', KEYS[4], key, cjson.encode(st))
  redis.call('SADD', KEYS[3], key)
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], ARGV[1])
return keys
"""

#: KEYS: state, items, pending, counts. ARGV: now, statuses…
_RESET = _SET_STATUS + """
local wanted = {}
for i = 2, #ARGV do wanted[ARGV[i]] = true end
local count = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local st = cjson.decode(all[i + 1])
  if wanted[st.status] and (st.owner == nil or st.owner == cjson.null) then
    set_status(st, 'pending', KEYS[4])
    st.attempts = 0
    st.error = cjson.null
    st.updated_at = tonumber(ARGV[1])
    redis.call('HSET', KEYS[2], all[i], cjson.encode(st))
    redis.call('ZADD', KEYS[3], st.position, all[i])
    count = count + 1
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SET', KEYS[1], 'open') end
return count
"""

#: KEYS: state, items, pending, counts. ARGV: now, error (JSON string).
_CANCEL = _SET_STATUS + """
redis.call('SET', KEYS[1], 'cancelled')
local keys = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, key in ipairs(keys) do
  local st = cjson.decode(redis.call('HGET', KEYS[2], key))
  set_status(st, 'cancelled', KEYS[4])
  st.error = ARGV[2]
  st.updated_at = tonumber(ARGV[1])
  redis.call('HSET', KEYS[2], key, cjson.encode(st))
end
redis.call('DEL', KEYS[3])
return #keys
"""

#: KEYS: batches, spec, state, items, inputs, pending, counts. ARGV: name, now, then key and input pairs.
_ADD = """
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local position = redis.call('HLEN', KEYS[4])
local added = 0
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[4], ARGV[i]) == 0 then
    local st = {position = position, status = 'pending', attempts = 0, updated_at = tonumber(ARGV[2])}
    redis.call('HSET', KEYS[4], ARGV[i], cjson.encode(st))
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[6], position, ARGV[i])
    position = position + 1
    added = added + 1
  end
end
redis.call('HINCRBY', KEYS[7], 'pending', added)
return added
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLedger(BatchLedger):
    """Batches in Redis (see the module docstring)."""

    def __init__(self, store: RedisRunStore) -> None:
        self.store = store
        client = store._client
        self._claim, self._write, self._adopt = (client.register_script(s) for s in (_CLAIM, _WRITE, _ADOPT))
        self._reset, self._cancel, self._add = (client.register_script(s) for s in (_RESET, _CANCEL, _ADD))
        self._batches = f"{store.prefix}:batches"

    def __repr__(self) -> str:
        return f"RedisLedger({self.store!r})"

    def _k(self, name: str, part: str) -> str:
        return f"{self.store.prefix}:batch:{name}:{part}"

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        with self.store._errors():
            return script(keys=keys, args=args)

    def open(self, name: str, spec: dict[str, Any]) -> tuple[BatchInfo, bool]:
        with self.store._errors() as client:
            created = bool(client.hsetnx(self._batches, name, repr(time.time())))
            if created:
                client.set(self._k(name, "spec"), json.dumps(spec))
                client.set(self._k(name, "state"), "open")
        info = self.get(name)
        assert info is not None
        return info, created

    def get(self, name: str) -> BatchInfo | None:
        with self.store._errors() as client:
            pipe = client.pipeline(transaction=False)
            pipe.hget(self._batches, name)
            for part in ("spec", "state"):
                pipe.get(self._k(name, part))
            pipe.hgetall(self._k(name, "counts"))
            created, spec, state, counts = pipe.execute()
        if created is None or spec is None:
            return None
        return BatchInfo(name, json.loads(spec), _text(state or b"open"), float(created),
                         {_text(k): int(v) for k, v in counts.items() if int(v) > 0})

    def list(self) -> builtins.list[BatchInfo]:
        with self.store._errors() as client:
            names = [_text(n) for n in client.hkeys(self._batches)]
        found = [info for info in (self.get(n) for n in names) if info is not None]
        return sorted(found, key=lambda info: (-info.created_at, info.name))

    def add(self, name: str, items: Sequence[tuple[str, Any]]) -> int:
        added = 0
        keys = [self._batches, *(self._k(name, p) for p in ("spec", "state", "items", "inputs", "pending", "counts"))]
        for start in range(0, len(items), 1000):
            args: list[Any] = [name, time.time()]
            for key, value in items[start:start + 1000]:
                args += [key, json.dumps(value)]
            result = self._run(self._add, keys, args)
            if result == -1:
                raise StoreError(f"There is no batch {name!r} in {self.store}.")
            added += int(result)
        return added

    def claim(self, name: str, owner: str, run_ids: Sequence[str]) -> builtins.list[BatchItem]:
        if not run_ids:
            return []
        keys = [self._k(name, p) for p in ("state", "items", "pending", "counts", f"owned:{owner}")]
        claimed = [_text(k) for k in self._run(self._claim, keys, [owner, time.time(), *run_ids])]
        return self._fetch(name, claimed)

    def _fetch(self, name: str, keys: Sequence[str]) -> builtins.list[BatchItem]:
        if not keys:
            return []
        with self.store._errors() as client:
            states = client.hmget(self._k(name, "items"), keys)
            inputs = client.hmget(self._k(name, "inputs"), keys)
        return [self._item(key, state, value) for key, state, value in zip(keys, states, inputs, strict=True)
                if state is not None]

    @staticmethod
    def _item(key: str, state: Any, value: Any) -> BatchItem:
        data = json.loads(state)
        for name in ("error", "usage"):
            raw = data.get(name)
            data[name] = json.loads(raw) if isinstance(raw, str) else None
        return BatchItem.from_dict({**data, "key": key, "input": json.loads(value) if value is not None else None})

    def write(self, name: str, owner: str, changes: Iterable[tuple[str, dict[str, Any]]]) -> int:
        args: list[Any] = [owner, time.time()]
        for key, fields in changes:
            unknown = set(fields) - WRITABLE
            if unknown:
                raise StoreError(f"Cannot write {sorted(unknown)} of a batch item.")
            encoded = {k: (json.dumps(v) if v is not None else None) if k in ("error", "usage") else v
                       for k, v in fields.items()}
            args += [key, json.dumps(encoded)]
        if len(args) == 2:
            return 0
        keys = [self._k(name, p) for p in ("items", "pending", "counts", f"owned:{owner}")]
        return int(self._run(self._write, keys, args))

    def heartbeat(self, name: str, owner: str, lease: float) -> None:
        with self.store._errors() as client:
            client.hset(self._k(name, "owners"), owner, repr(time.time() + lease))

    def release(self, name: str, owner: str) -> None:
        with self.store._errors() as client:
            client.hset(self._k(name, "owners"), owner, "0")

    def adopt(self, name: str, owner: str) -> builtins.list[BatchItem]:
        with self.store._errors() as client:
            owners = {_text(k): float(v) for k, v in client.hgetall(self._k(name, "owners")).items()}
        now = time.time()
        taken: builtins.list[str] = []
        for gone, expires in owners.items():
            dead = owner_alive(gone) is False
            if gone == owner or (expires >= now and not dead):
                continue
            keys = [self._k(name, p) for p in ("owners", f"owned:{gone}", f"owned:{owner}", "items")]
            taken += [_text(k) for k in self._run(self._adopt, keys, [gone, owner, now, "1" if dead else "0"])]
        return sorted(self._fetch(name, taken), key=lambda item: item.position)

    def items(self, name: str, statuses: Iterable[str] | None = None) -> builtins.list[BatchItem]:
        wanted = None if statuses is None else set(statuses)
        with self.store._errors() as client:
            states = client.hgetall(self._k(name, "items"))
            inputs = client.hgetall(self._k(name, "inputs"))
        found = [self._item(_text(k), v, inputs.get(k)) for k, v in states.items()]
        return sorted((i for i in found if wanted is None or i.status in wanted), key=lambda item: item.position)

    def reset(self, name: str, statuses: Iterable[str]) -> int:
        wanted = sorted(set(statuses) & FINAL_STATUSES)
        if not wanted:
            return 0
        keys = [self._k(name, p) for p in ("state", "items", "pending", "counts")]
        return int(self._run(self._reset, keys, [time.time(), *wanted]))

    def cancel(self, name: str) -> int:
        error = json.dumps({"code": "cancelled", "message": "The batch was cancelled before this item started."})
        keys = [self._k(name, p) for p in ("state", "items", "pending", "counts")]
        return int(self._run(self._cancel, keys, [time.time(), error]))

    def delete(self, name: str) -> None:
        with self.store._errors() as client:
            owners = [_text(o) for o in client.hkeys(self._k(name, "owners"))]
            parts = ("spec", "state", "items", "inputs", "pending", "counts", "owners", *(f"owned:{o}" for o in owners))
            client.delete(*(self._k(name, p) for p in parts))
            client.hdel(self._batches, name)
