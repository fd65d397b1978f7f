"""Versioned object store: the fake's etcd.

One global, strictly increasing resourceVersion: every write bumps it by exactly one and appends one
``Change`` to the history, so history positions are ``rv - compacted_rv - 1`` (O(1) watch resume).
The history is bounded by the compaction window; anything older than ``compacted_rv`` is gone, which
is what makes too-old watches and expired continue tokens answer 410, as with etcd compaction.
"""

from __future__ import annotations

import collections
import copy
import threading
import time
from dataclasses import dataclass

from .resources import Obj

Key = tuple[str, str, str]  # (store, namespace or "", name)

# Real clusters never hand out small resourceVersions; starting high catches clients that treat
# "0"/"1" specially or parse RVs as small ints.
INITIAL_RV = 1000


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: Obj  # state after the change; for DELETED the last state, carrying the deletion's RV
    prev: Obj | None  # state before the change (None for ADDED)


class TooOld(Exception):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"too old resource version: {requested} ({compacted})")
        self.requested = requested
        self.compacted = compacted


class Store:
    def __init__(self, compaction_window: int) -> None:
        # An RLock-backed condition: watchers wait on it, writers notify_all after each change.
        self.cond = threading.Condition(threading.RLock())
        self.compaction_window = max(1, compaction_window)
        self.rv = INITIAL_RV
        self.compacted_rv = INITIAL_RV
        self._objects: dict[Key, Obj] = {}
        self._history: list[Change] = []
        self.written_at: dict[Key, float] = {}  # monotonic time of the last write (event TTL)
        # Objects per (store, namespace, status.phase), kept as writes happen: a waiter (a benchmark, a
        # test) asks "how many pods run?" in O(1) instead of copying every object on each look.
        self._phases: collections.Counter[tuple[str, str, str]] = collections.Counter()

    # -- reads (callers get private copies) ------------------------------------------------------

    def get(self, key: Key) -> Obj | None:
        with self.cond:
            obj = self._objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def exists(self, key: Key) -> bool:
        with self.cond:
            return key in self._objects

    def items(
        self, store: str, namespace: str | None = None, at_rv: int | None = None
    ) -> list[tuple[Key, Obj]]:
        """Objects of one store (optionally one namespace) sorted by key, as of ``at_rv`` (None = now).
        Raises TooOld when ``at_rv`` is before the compaction point."""
        with self.cond:
            if at_rv is None or at_rv >= self.rv:
                objs = {k: v for k, v in self._objects.items() if k[0] == store}
            else:
                if at_rv < self.compacted_rv:
                    raise TooOld(at_rv, self.compacted_rv)
                objs = {k: v for k, v in self._objects.items() if k[0] == store}
                # Undo every change after at_rv, newest first.
                for ch in reversed(self._history):
                    if ch.rv <= at_rv:
                        break
                    if ch.key[0] != store:
                        continue
                    if ch.prev is None:
                        objs.pop(ch.key, None)
                    else:
                        objs[ch.key] = ch.prev
            selected = [
                (k, copy.deepcopy(v)) for k, v in objs.items() if namespace is None or k[1] == namespace
            ]
        selected.sort(key=lambda kv: (kv[0][1], kv[0][2]))
        return selected

    def count_phase(self, store: str, namespace: str, phase: str) -> int:
        """How many objects of one store and namespace have this status.phase now."""
        with self.cond:
            return self._phases[(store, namespace, phase)]

    def wait_phase(self, store: str, namespace: str, phase: str, at_least: int, timeout: float) -> bool:
        """Block until at least `at_least` such objects exist (woken by each write); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self._phases[(store, namespace, phase)] >= at_least, timeout)

    def _count(self, key: Key, obj: Obj | None, delta: int) -> None:
        phase = ((obj or {}).get("status") or {}).get("phase")
        if isinstance(phase, str):
            self._phases[(key[0], key[1], phase)] += delta

    def changes_after(self, rv: int) -> list[Change]:
        """Every change with resourceVersion > rv, in order (shared objects: do not mutate)."""
        with self.cond:
            if rv < self.compacted_rv:
                raise TooOld(rv, self.compacted_rv)
            start = rv - self.compacted_rv
            return self._history[start:] if start < len(self._history) else []

    # -- writes -------------------------------------------------------------------------------------

    def _append(self, change: Change) -> None:
        self._history.append(change)
        excess = len(self._history) - self.compaction_window
        if excess > 0:
            self.compacted_rv = self._history[excess - 1].rv
            del self._history[:excess]
        self.cond.notify_all()

    def write(self, key: Key, obj: Obj) -> Obj:
        """Create or replace ``key``; stamps metadata.resourceVersion and returns a copy."""
        with self.cond:
            prev = self._objects.get(key)
            self.rv += 1
            stored = copy.deepcopy(obj)
            stored.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
            self._objects[key] = stored
            self._count(key, prev, -1)
            self._count(key, stored, +1)
            self.written_at[key] = time.monotonic()
            self._append(Change(self.rv, "ADDED" if prev is None else "MODIFIED", key, stored, prev))
            return copy.deepcopy(stored)

    def delete(self, key: Key) -> Obj | None:
        with self.cond:
            prev = self._objects.pop(key, None)
            if prev is None:
                return None
            self._count(key, prev, -1)
            self.written_at.pop(key, None)
            self.rv += 1
            # The DELETED notification carries the object with the deletion's resourceVersion.
            gone = copy.deepcopy(prev)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._append(Change(self.rv, "DELETED", key, gone, prev))
            return copy.deepcopy(gone)

    def compact(self) -> None:
        """Drop all history (like an etcd compaction at the current revision)."""
        with self.cond:
            self.compacted_rv = self.rv
            self._history.clear()
            self.cond.notify_all()

    def keys(self, store: str) -> list[Key]:
        with self.cond:
            return [k for k in self._objects if k[0] == store]
