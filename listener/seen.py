"""What the listener has seen: which pull occurrences are fully handled (`SeenMarks`), and the latest
kubelet event of each container (`LatestPulls`), so the catch-up pass uses the event's pull time."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from listener.pulls import Pull
from pulltag.store import Store, StoreError

log = logging.getLogger(__name__)

# Seen markers outlive the events they mark (1 h event TTL by default) with a margin.
SEEN_TTL_SECONDS = 3 * 3600.0
# Containers remembered by LatestPulls (about 0.6 kB each: 16 MB when full). The ones that matter are
# those whose event is not handled yet when a catch-up pass runs: at most what the confirmation and
# tagging queues hold (10,000 each) plus the workers' items. Beyond this the oldest are forgotten, and a
# catch-up pass falls back to such a container's start time (as it must once the event has expired).
LATEST_PULLS_MAX = 25_000

ContainerKey = tuple[str, str, str]  # (pod uid, container kind, container name)
_EventFacts = tuple[str, int, datetime, str]  # (event uid, event count, pulled at, node)


class SeenMarks:
    """Which pull occurrences are fully handled: the store's seen markers, with a small local memory
    so a relist does not cost a store round trip per already-handled event."""

    def __init__(self, store: Store, ttl_seconds: float = SEEN_TTL_SECONDS, local_max: int = 10_000) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._local: OrderedDict[str, None] = OrderedDict()
        self._local_max = local_max
        self._lock = threading.Lock()

    def is_seen(self, key: str) -> bool:
        with self._lock:
            if key in self._local:
                return True
        try:
            return self.store.is_seen(key)
        except StoreError as exc:
            # Unknown: handle it again; claims and done markers keep that from tagging twice.
            log.warning("seen check for %s failed: %s", key, exc)
            return False

    def mark(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.store.mark_seen(key, self.ttl)
            except StoreError as exc:
                log.warning("could not mark %s handled: %s", key, exc)
            with self._lock:
                self._local[key] = None
                while len(self._local) > self._local_max:
                    self._local.popitem(last=False)


class LatestPulls:
    """The newest kubelet event seen for each container: its identity, time and node, by (pod uid, kind,
    name). The catch-up pass takes a container's pull from here when there is one (`of`), so the tag it
    renders is the one the event path renders, and both are one work item (equal dedup keys)."""

    def __init__(self, max_entries: int = LATEST_PULLS_MAX) -> None:
        self._events: OrderedDict[ContainerKey, _EventFacts] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def add(self, pull: Pull) -> None:
        key = (pull.pod_uid, pull.container_kind, pull.container)
        with self._lock:
            old = self._events.get(key)
            if old is not None and old[2] > pull.pulled_at:
                return  # an older event delivered late (a relist): the newer one stays
            self._events[key] = (pull.event_uid, pull.event_count, pull.pulled_at, pull.node)
            self._events.move_to_end(key)
            while len(self._events) > self._max:
                self._events.popitem(last=False)

    def of(self, started: Pull) -> Pull:
        """`started` (a pull built from a container's status) with its event's identity, time and node
        when an event of that container was seen; else `started` as it is."""
        with self._lock:
            facts = self._events.get((started.pod_uid, started.container_kind, started.container))
        if facts is None:
            return started
        event_uid, event_count, pulled_at, node = facts
        return replace(started, event_uid=event_uid, event_count=event_count, pulled_at=pulled_at, node=node)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
