"""The shared store for several replicas: Redis (`redis://[:password@]host:port/db`, `rediss://` for TLS).

Keys (all under `pulltag:`):
    adm:rec:{uid}            JSON admission record, expires with its TTL (PX)
    adm:name:{ns}/{name}     uid of the most recently written record of that pod, same TTL
    adm:idx                  zset uid -> admitted_at: every record, for listing newest first
    adm:ns:{ns}              zset uid -> admitted_at: the records of one namespace
    adm:exp                  zset uid -> expiry (ms): lets writers prune the index zsets of expired uids
    adm:nsof                 hash uid -> namespace: which namespace zset a pruned uid sits in
    claim:{key}, seen:{key}  SET NX PX markers
    ledger:seq               counter giving each entry a member name that sorts in insertion order
    ledger                   zset member -> tagged_at: every entry
    ledger:data              hash member -> JSON entry
    ledger:image:{image}, ledger:digest:{digest}, ledger:ns:{ns}   zsets member -> tagged_at, for filters
    inv, inv:last, inv:pass  the inventory of running digests (see redis_inventory.py)

Multi-key writes run as one MULTI transaction or one Lua script, so readers never see half a write.
The client never retries: a timeout surfaces at once as `StoreUnavailable`, within the store timeout.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pulltag.logs import redact_url
from pulltag.store.base import (
    AdmissionRecord,
    LedgerEntry,
    Store,
    StoreError,
    StoreUnavailable,
    canonical_entry,
    entry_from_json,
    entry_to_json,
    ledger_image,
    record_from_json,
    record_to_json,
)
from pulltag.store.redis_inventory import PREFIX, RedisInventory

log = logging.getLogger(__name__)

_HEALTH_CHECK_INTERVAL = 10  # seconds idle after which a pooled connection is pinged before use
_PRUNE_INTERVAL_MS = 1000  # writers prune expired uids from the admission indexes at most this often
_PAGE = 200  # zset members fetched per round trip when reading through an index

# Remove expired uids from the admission indexes. Atomic, so a uid re-written concurrently is never
# dropped from an index while its record lives. KEYS: exp, idx, nsof. ARGV: now_ms, key prefix.
_PRUNE_ADMISSIONS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 5000)
for _, uid in ipairs(due) do
  if redis.call('EXISTS', ARGV[2] .. 'adm:rec:' .. uid) == 0 then
    local ns = redis.call('HGET', KEYS[3], uid)
    if ns then redis.call('ZREM', ARGV[2] .. 'adm:ns:' .. ns, uid) end
    redis.call('ZREM', KEYS[2], uid)
    redis.call('HDEL', KEYS[3], uid)
    redis.call('ZREM', KEYS[1], uid)
  end
end
return #due
"""

# Append one ledger entry and drop the oldest past the bound, atomically.
# KEYS: seq, ledger, data. ARGV: prefix, tagged_at, json, image, digest, namespace, max_entries.
_APPEND_LEDGER = """
local member = string.format('%016d', redis.call('INCR', KEYS[1]))
local p = ARGV[1] .. 'ledger:'
redis.call('ZADD', KEYS[2], ARGV[2], member)
redis.call('HSET', KEYS[3], member, ARGV[3])
redis.call('ZADD', p .. 'image:' .. ARGV[4], ARGV[2], member)
redis.call('ZADD', p .. 'digest:' .. ARGV[5], ARGV[2], member)
redis.call('ZADD', p .. 'ns:' .. ARGV[6], ARGV[2], member)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[7])
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  for _, m in ipairs(old) do
    local raw = redis.call('HGET', KEYS[3], m)
    if raw then
      local e = cjson.decode(raw)
      redis.call('ZREM', p .. 'image:' .. e['image'], m)
      redis.call('ZREM', p .. 'digest:' .. e['digest'], m)
      redis.call('ZREM', p .. 'ns:' .. e['namespace'], m)
      redis.call('HDEL', KEYS[3], m)
    end
    redis.call('ZREM', KEYS[2], m)
  end
end
return member
"""


def _ms(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError(f"TTL must be positive, got {seconds}")
    return max(1, round(seconds * 1000))


class RedisStore(RedisInventory, Store):
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 2.0,
        admission_ttl_seconds: float = 24 * 3600,
        ledger_max_entries: int = 100_000,
    ) -> None:
        self.url = redact_url(url)  # safe to log; the pool keeps the real one
        self._timeout = timeout_seconds
        self._admission_ttl = admission_ttl_seconds
        self._ledger_max = ledger_max_entries
        self._next_prune_ms = 0
        try:
            # The pool connects lazily and resets itself in a forked child (it tracks the pid).
            self._pool = redis.ConnectionPool.from_url(
                url,
                socket_connect_timeout=timeout_seconds,
                socket_timeout=timeout_seconds,
                health_check_interval=_HEALTH_CHECK_INTERVAL,
                retry=Retry(NoBackoff(), 0),  # no retries: a dead store must fail within the timeout
                retry_on_timeout=False,
            )
        except (ValueError, redis.RedisError) as exc:
            raise StoreError(f"bad Redis store URL {redact_url(url)}: {self._scrub(exc)}") from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._prune = self._client.register_script(_PRUNE_ADMISSIONS)
        self._append = self._client.register_script(_APPEND_LEDGER)

    # --- errors ----------------------------------------------------------------------------------------
    def _scrub(self, exc: BaseException) -> str:
        """The exception's text, with the URL's password removed in case a driver ever echoes it."""
        text = str(exc) or type(exc).__name__
        password = self._password()
        return text.replace(password, "***") if password else text

    def _password(self) -> str | None:
        with contextlib.suppress(AttributeError):
            value = self._pool.connection_kwargs.get("password")
            return str(value) if value else None
        return None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn every driver exception into StoreUnavailable (cannot reach) or StoreError (refused)."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, OSError) as exc:
            # ConnectionError covers refused, reset, authentication and a server still loading data;
            # ReadOnlyError is a replica after failover: none of these is the request's fault.
            raise StoreUnavailable(self.url, self._scrub(exc)) from None
        except redis.RedisError as exc:
            raise StoreError(f"redis store {self.url}: {self._scrub(exc)}") from None

    # --- admission records -----------------------------------------------------------------------------
    def put_admission(self, record: AdmissionRecord, ttl_seconds: float | None = None) -> None:
        self.put_admissions([record], ttl_seconds)

    def put_admissions(self, records: Sequence[AdmissionRecord], ttl_seconds: float | None = None) -> None:
        ttl_ms = _ms(self._admission_ttl if ttl_seconds is None else ttl_seconds)
        if not records:
            return
        now_ms = int(time.time() * 1000)
        with self._errors():
            # One MULTI/EXEC for the whole batch: one round trip, and all records land or none.
            pipe = self._client.pipeline(transaction=True)
            for record in records:
                uid = record.uid
                data = record_to_json(record)
                pipe.set(f"{PREFIX}adm:rec:{uid}", data, px=ttl_ms)
                pipe.set(f"{PREFIX}adm:name:{record.namespace}/{record.name}", uid, px=ttl_ms)
                pipe.zadd(f"{PREFIX}adm:idx", {uid: record.admitted_at})
                pipe.zadd(f"{PREFIX}adm:ns:{record.namespace}", {uid: record.admitted_at})
                pipe.hset(f"{PREFIX}adm:nsof", uid, record.namespace)
                pipe.zadd(f"{PREFIX}adm:exp", {uid: now_ms + ttl_ms})
            pipe.execute()
            self._maybe_prune(now_ms)

    def _maybe_prune(self, now_ms: int) -> None:
        """Prune the indexes at most once per interval: it keeps them bounded, and skipping it keeps a
        write at one round trip (a script inside MULTI costs an extra SCRIPT EXISTS each time)."""
        if now_ms < self._next_prune_ms:
            return
        self._next_prune_ms = now_ms + _PRUNE_INTERVAL_MS
        self._prune_call(now_ms)

    def _prune_call(self, now_ms: int) -> None:
        keys = [f"{PREFIX}adm:exp", f"{PREFIX}adm:idx", f"{PREFIX}adm:nsof"]
        self._prune(keys=keys, args=[now_ms, PREFIX])

    def get_admission(self, uid: str) -> AdmissionRecord | None:
        with self._errors():
            raw = self._client.get(f"{PREFIX}adm:rec:{uid}")
        return None if raw is None else record_from_json(cast(bytes, raw))

    def find_admission(self, namespace: str, name: str) -> AdmissionRecord | None:
        with self._errors():
            uid = self._client.get(f"{PREFIX}adm:name:{namespace}/{name}")
            if uid is None:
                return None
            record = self.get_admission(cast(bytes, uid).decode())
        # The pointer could name a uid since rewritten for another pod; only a match counts.
        if record is None or record.namespace != namespace or record.name != name:
            return None
        return record

    def list_admissions(self, namespace: str | None = None, limit: int = 100) -> list[AdmissionRecord]:
        index = f"{PREFIX}adm:idx" if namespace is None else f"{PREFIX}adm:ns:{namespace}"
        records: list[AdmissionRecord] = []
        with self._errors():
            self._prune_call(int(time.time() * 1000))
            for raws in self._pages(index, "-inf", "+inf", limit, self._admission_values):
                for raw in raws:
                    if raw is None:
                        continue  # expired since the prune
                    record = record_from_json(raw)
                    if namespace is None or record.namespace == namespace:
                        records.append(record)
                if len(records) >= limit:
                    break
        return records[: max(0, limit)]

    def _pages(
        self, index: str, low: str, high: str, limit: int, fetch: Callable[[list[bytes]], Any]
    ) -> Iterator[list[Any]]:
        """`fetch(members)` for the members of zset `index` in [low, high], highest score first, a page
        at a time. Callers filter and stop once they have `limit`, so a sparse filter keeps paging."""
        offset = 0
        page = max(_PAGE, limit)
        while limit > 0:
            members = cast(
                list[bytes], self._client.zrevrangebyscore(index, high, low, start=offset, num=page)
            )
            if not members:
                return
            yield cast(list[Any], fetch(members))
            offset += len(members)

    def _admission_values(self, uids: list[bytes]) -> Any:
        return self._client.mget([f"{PREFIX}adm:rec:{uid.decode()}" for uid in uids])

    def _ledger_values(self, members: list[bytes]) -> Any:
        return self._client.hmget(f"{PREFIX}ledger:data", members)

    # --- claims and seen markers -----------------------------------------------------------------------
    def claim(self, key: str, ttl_seconds: float) -> bool:
        with self._errors():
            return bool(self._client.set(f"{PREFIX}claim:{key}", 1, nx=True, px=_ms(ttl_seconds)))

    def release(self, key: str) -> None:
        with self._errors():
            self._client.delete(f"{PREFIX}claim:{key}")

    def mark_seen(self, key: str, ttl_seconds: float) -> bool:
        with self._errors():
            return bool(self._client.set(f"{PREFIX}seen:{key}", 1, nx=True, px=_ms(ttl_seconds)))

    def is_seen(self, key: str) -> bool:
        with self._errors():
            return bool(self._client.exists(f"{PREFIX}seen:{key}"))

    # --- tag ledger ------------------------------------------------------------------------------------
    def append_ledger(self, entry: LedgerEntry) -> None:
        # ensure_ascii=False: the script decodes the JSON to find the index keys, which Python names
        # with the raw UTF-8 of the values; cjson would turn \\u escapes of astral characters into
        # something else.
        entry = canonical_entry(entry)
        data = entry_to_json(entry, ensure_ascii=False)
        keys = [f"{PREFIX}ledger:seq", f"{PREFIX}ledger", f"{PREFIX}ledger:data"]
        args = [PREFIX, repr(entry.tagged_at), data, entry.image, entry.digest, entry.namespace]
        with self._errors():
            self._append(keys=keys, args=[*args, self._ledger_max])

    def query_ledger(
        self,
        *,
        image: str | None = None,
        digest: str | None = None,
        namespace: str | None = None,
        pod: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[LedgerEntry]:
        # Walk the most selective index; check the remaining filters on the entries themselves.
        image = None if image is None else ledger_image(image)
        if digest is not None:
            index = f"{PREFIX}ledger:digest:{digest}"
        elif image is not None:
            index = f"{PREFIX}ledger:image:{image}"
        elif namespace is not None:
            index = f"{PREFIX}ledger:ns:{namespace}"
        else:
            index = f"{PREFIX}ledger"
        low = "-inf" if since is None else repr(float(since))
        high = "+inf" if until is None else repr(float(until))
        entries: list[LedgerEntry] = []
        with self._errors():
            for raws in self._pages(index, low, high, limit, self._ledger_values):
                for raw in raws:
                    if raw is None:
                        continue  # trimmed while we read
                    entry = entry_from_json(raw)
                    if _matches(entry, image, digest, namespace, pod):
                        entries.append(entry)
                if len(entries) >= limit:
                    break
        return entries[: max(0, limit)]

    # --- lifecycle -------------------------------------------------------------------------------------
    def ping(self) -> None:
        with self._errors():
            self._client.ping()

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self._pool.disconnect()

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r})"


def _matches(
    entry: LedgerEntry, image: str | None, digest: str | None, namespace: str | None, pod: str | None
) -> bool:
    return (
        (image is None or entry.image == image)
        and (digest is None or entry.digest == digest)
        and (namespace is None or entry.namespace == namespace)
        and (pod is None or entry.pod == pod)
    )
