"""Scripted in-memory fakes of our own interfaces for unit tests of the listener's decisions: the store,
a registry client and the slice of the Kubernetes API the work side uses. Each can be told to fail."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from listener.kube import KubeError
from listener.registry.base import AlreadyThere, Created, TagResult
from listener.registry.errors import TagConflict, TransientError
from pulltag.store.base import (
    AdmissionRecord,
    InventoryEntry,
    InventoryPass,
    LedgerEntry,
    Sighting,
    Store,
    StoreError,
    canonical_sighting,
    ledger_image,
    merge_sighting,
)

Obj = dict[str, Any]


class MemoryStore(Store):
    """The Store contract in dictionaries (TTLs ignored: a test is shorter than any of them). `down`
    makes every call raise StoreError; `failing` names the methods that raise."""

    url = "memory://"

    def __init__(self) -> None:
        self.admissions: dict[str, AdmissionRecord] = {}
        self.claims: set[str] = set()
        self.seen: set[str] = set()
        self.ledger: list[LedgerEntry] = []
        self.entries: dict[tuple[str, str, str], InventoryEntry] = {}
        self.last_pass: InventoryPass | None = None
        self.down = False
        self.failing: set[str] = set()
        self._lock = threading.Lock()

    def _check(self, method: str) -> None:
        if self.down or method in self.failing:
            raise StoreError(f"memory store: {method} failed (scripted)")

    def put_admission(self, record: AdmissionRecord, ttl_seconds: float | None = None) -> None:
        self._check("put_admission")
        self.admissions[record.uid] = record

    def get_admission(self, uid: str) -> AdmissionRecord | None:
        self._check("get_admission")
        return self.admissions.get(uid)

    def find_admission(self, namespace: str, name: str) -> AdmissionRecord | None:
        self._check("find_admission")
        found = [r for r in self.admissions.values() if (r.namespace, r.name) == (namespace, name)]
        return found[-1] if found else None

    def list_admissions(self, namespace: str | None = None, limit: int = 100) -> list[AdmissionRecord]:
        self._check("list_admissions")
        return [r for r in self.admissions.values() if namespace in (None, r.namespace)][:limit]

    def claim(self, key: str, ttl_seconds: float) -> bool:
        self._check("claim")
        with self._lock:
            if key in self.claims:
                return False
            self.claims.add(key)
            return True

    def release(self, key: str) -> None:
        self._check("release")
        self.claims.discard(key)

    def mark_seen(self, key: str, ttl_seconds: float) -> bool:
        self._check("mark_seen")
        with self._lock:
            new = key not in self.seen
            self.seen.add(key)
            return new

    def is_seen(self, key: str) -> bool:
        self._check("is_seen")
        return key in self.seen

    def append_ledger(self, entry: LedgerEntry) -> None:
        self._check("append_ledger")
        self.ledger.append(entry)

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
        self._check("query_ledger")
        found = [
            e
            for e in reversed(self.ledger)
            if image in (None, e.image)
            and digest in (None, e.digest)
            and namespace in (None, e.namespace)
            and pod in (None, e.pod)
        ]
        return found[:limit]

    def record_sightings(self, sightings: Sequence[Sighting]) -> None:
        self._check("record_sightings")
        with self._lock:
            for seen in map(canonical_sighting, sightings):
                key = (seen.image, seen.digest, seen.namespace)
                self.entries[key] = merge_sighting(self.entries.get(key), seen)

    def complete_inventory_pass(self, done: InventoryPass) -> None:
        self._check("complete_inventory_pass")
        self.last_pass = done

    def last_inventory_pass(self) -> InventoryPass | None:
        self._check("last_inventory_pass")
        return self.last_pass

    def inventory(
        self, *, image: str | None = None, namespace: str | None = None, digest: str | None = None
    ) -> list[InventoryEntry]:
        self._check("inventory")
        image = None if image is None else ledger_image(image)
        return [
            e
            for key, e in sorted(self.entries.items())
            if image in (None, e.image) and digest in (None, e.digest) and namespace in (None, e.namespace)
        ]

    def prune_inventory(self, last_seen_before: float) -> int:
        self._check("prune_inventory")
        with self._lock:
            old = [key for key, e in self.entries.items() if e.last_seen < last_seen_before]
            for key in old:
                del self.entries[key]
        return len(old)

    def ping(self) -> None:
        self._check("ping")

    def close(self) -> None:
        return None

    def outcomes(self) -> list[tuple[str, str]]:
        """(outcome, tag) of every ledger entry, oldest first."""
        return [(e.outcome, e.tag) for e in self.ledger]


class MemoryRegistry:
    """A registry client over {repository: {tag: digest}}. `transient_failures` calls fail first (as a
    5xx would); tags are never moved (a name on another digest is a TagConflict)."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, str]] = {}
        self.transient_failures = 0

    def _maybe_fail(self) -> None:
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise TransientError("registry answered 503 (scripted)")

    def tags_on(self, repository: str, digest: str, prefix: str = "") -> list[str]:
        self._maybe_fail()
        return [t for t, d in self.tags.get(repository, {}).items() if d == digest and t.startswith(prefix)]

    def create_tag(self, repository: str, digest: str, tag: str) -> TagResult:
        self._maybe_fail()
        tags = self.tags.setdefault(repository, {})
        existing = tags.get(tag)
        if existing == digest:
            return AlreadyThere(repository, tag, digest)
        if existing is not None:
            raise TagConflict("tag exists", tag=tag, wanted=digest, existing=existing)
        tags[tag] = digest
        return Created(repository, tag, digest)


class MemoryKube:
    """Pods, namespace labels and posted events in memory. `failures` API calls raise KubeError first."""

    def __init__(self, pods: list[Obj] | None = None) -> None:
        self.pods: dict[tuple[str, str], Obj] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.events: list[Obj] = []
        self.failures = 0
        for pod in pods or []:
            self.add_pod(pod)

    def add_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.pods[(meta["namespace"], meta["name"])] = copy.deepcopy(pod)

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise KubeError("GET: HTTP 503 (scripted)", status=503)

    def get_pod(self, namespace: str, name: str) -> Obj | None:
        self._maybe_fail()
        pod = self.pods.get((namespace, name))
        return copy.deepcopy(pod) if pod is not None else None

    def list_pods(self, namespace: str | None = None, limit: int = 500) -> Iterator[Obj]:
        self._maybe_fail()
        for (ns, _), pod in list(self.pods.items()):
            if namespace in (None, ns):
                yield copy.deepcopy(pod)

    def namespace_labels(self, name: str) -> dict[str, str]:
        self._maybe_fail()
        return dict(self.namespaces.get(name, {}))

    def create_event(self, namespace: str, event: Obj) -> Obj:
        self._maybe_fail()
        self.events.append(event)
        return event

    def reasons(self) -> list[str]:
        return [str(e["reason"]) for e in self.events]
