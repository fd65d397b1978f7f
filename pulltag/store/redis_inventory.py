"""The inventory of running digests in the Redis store (a mixin of `RedisStore`, kept apart so each module
stays small).

Keys (under `pulltag:`):
    inv          hash: JSON [image, digest, namespace] -> "pods first_seen last_seen"
    inv:last     zset: the same field -> last_seen, for pruning by age
    inv:pass     "started_at completed_at digests" of the last complete pass

Times travel as Python `repr` strings and are stored as received, so they round-trip exactly (cjson
would keep only 14 significant digits).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, cast

from pulltag.store.base import (
    InventoryEntry,
    InventoryPass,
    Sighting,
    canonical_sighting,
    ledger_image,
)

PREFIX = "pulltag:"  # every key of the Redis store starts with it (redis.py imports it from here)
_HASH = f"{PREFIX}inv"
_LAST = f"{PREFIX}inv:last"
_PASS = f"{PREFIX}inv:pass"
_SCAN_PAGE = 500  # hash fields per HSCAN round trip

# merge_sighting for each sighting, atomically. KEYS: hash, zset. ARGV: (field, pods, seen_at) triples.
_RECORD_SIGHTINGS = """
for i = 1, #ARGV, 3 do
  local field, pods, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local first, last = at, at
  local raw = redis.call('HGET', KEYS[1], field)
  if raw then
    local old_pods, old_first, old_last = string.match(raw, '^(%S+) (%S+) (%S+)$')
    if tonumber(pods) == 0 then pods = old_pods end
    if tonumber(old_first) < tonumber(first) then first = old_first end
    if tonumber(old_last) > tonumber(last) then last = old_last end
  end
  redis.call('HSET', KEYS[1], field, pods .. ' ' .. first .. ' ' .. last)
  redis.call('ZADD', KEYS[2], last, field)
end
return #ARGV / 3
"""

# Drop the entries last seen before ARGV[1], atomically (a sighting cannot slip in between).
_PRUNE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, field in ipairs(old) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
return #old
"""


class _Connection(Protocol):
    """What the mixin needs of `RedisStore`: the client and its error translation."""

    _client: Any

    def _errors(self) -> contextlib.AbstractContextManager[None]: ...


class RedisInventory:
    """The inventory methods of `Store` over Redis."""

    def record_sightings(self: _Connection, sightings: Sequence[Sighting]) -> None:
        args: list[str] = []
        for s in map(canonical_sighting, sightings):
            args += [json.dumps([s.image, s.digest, s.namespace]), str(s.pods), repr(float(s.seen_at))]
        if not args:
            return
        with self._errors():
            self._client.eval(_RECORD_SIGHTINGS, 2, _HASH, _LAST, *args)

    def complete_inventory_pass(self: _Connection, done: InventoryPass) -> None:
        value = f"{float(done.started_at)!r} {float(done.completed_at)!r} {int(done.digests)}"
        with self._errors():
            self._client.set(_PASS, value)

    def last_inventory_pass(self: _Connection) -> InventoryPass | None:
        with self._errors():
            raw = self._client.get(_PASS)
        if raw is None:
            return None
        started, completed, digests = cast(bytes, raw).decode().split()
        return InventoryPass(float(started), float(completed), int(digests))

    def inventory(
        self: _Connection,
        *,
        image: str | None = None,
        namespace: str | None = None,
        digest: str | None = None,
    ) -> list[InventoryEntry]:
        image = None if image is None else ledger_image(image)
        found: list[InventoryEntry] = []
        with self._errors():
            # HSCAN a page at a time: the hash is bounded by pruning, but never read in one reply.
            items = self._client.hscan_iter(_HASH, count=_SCAN_PAGE)
            for entry in _entries(cast(Iterator[tuple[bytes, bytes]], items)):
                if _matches(entry, image, digest, namespace):
                    found.append(entry)
        return sorted(found, key=lambda e: (e.image, e.digest, e.namespace))

    def prune_inventory(self: _Connection, last_seen_before: float) -> int:
        with self._errors():
            dropped = self._client.eval(_PRUNE, 2, _HASH, _LAST, repr(float(last_seen_before)))
        return int(dropped)


def _matches(entry: InventoryEntry, image: str | None, digest: str | None, namespace: str | None) -> bool:
    return (
        image in (None, entry.image)
        and digest in (None, entry.digest)
        and namespace in (None, entry.namespace)
    )


def _entries(items: Iterator[tuple[bytes, bytes]]) -> Iterator[InventoryEntry]:
    for field, value in items:
        image, digest, namespace = json.loads(field)
        pods, first, last = value.decode().split()
        yield InventoryEntry(image, digest, namespace, int(pods), float(first), float(last))
