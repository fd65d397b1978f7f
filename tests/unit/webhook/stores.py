"""A Store for app unit tests whose `put_admission` can be told to succeed, fail or hang."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from pulltag.store.base import (
    AdmissionRecord,
    InventoryEntry,
    InventoryPass,
    LedgerEntry,
    Sighting,
    Store,
    StoreError,
)


class ScriptedStore(Store):
    url = "memory://"

    def __init__(self) -> None:
        self.records: dict[str, AdmissionRecord] = {}
        self.failure: Callable[[], Exception] | None = None
        self.refused: set[str] = set()  # uids whose write raises StoreError (a record the store refuses)
        self.gate: threading.Event | None = None  # when set, writes block until the event is set
        self.entered = threading.Semaphore(0)  # released once per write that started
        self.lock = threading.Lock()
        self.batches: list[int] = []  # the size of every put_admissions call, in order

    def put_admissions(self, records: Sequence[AdmissionRecord], ttl_seconds: float | None = None) -> None:
        with self.lock:
            self.batches.append(len(records))
        super().put_admissions(records, ttl_seconds)

    def put_admission(self, record: AdmissionRecord, ttl_seconds: float | None = None) -> None:
        self.entered.release()
        if self.gate is not None:
            self.gate.wait(30)
        if self.failure is not None:
            raise self.failure()
        if record.uid in self.refused:
            raise StoreError(f"record {record.uid} refused")
        with self.lock:
            self.records[record.uid] = record

    def get_admission(self, uid: str) -> AdmissionRecord | None:
        return self.records.get(uid)

    def find_admission(self, namespace: str, name: str) -> AdmissionRecord | None:
        raise NotImplementedError

    def list_admissions(self, namespace: str | None = None, limit: int = 100) -> list[AdmissionRecord]:
        return list(self.records.values())[:limit]

    def claim(self, key: str, ttl_seconds: float) -> bool:
        raise NotImplementedError

    def release(self, key: str) -> None:
        raise NotImplementedError

    def mark_seen(self, key: str, ttl_seconds: float) -> bool:
        raise NotImplementedError

    def is_seen(self, key: str) -> bool:
        raise NotImplementedError

    def append_ledger(self, entry: LedgerEntry) -> None:
        raise NotImplementedError

    def query_ledger(
        self,
        *,
        image: str | None = None,
        digest: str | None = None,
        namespace: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[LedgerEntry]:
        raise NotImplementedError

    # the webhook never touches the inventory
    def record_sightings(self, sightings: Sequence[Sighting]) -> None:
        raise NotImplementedError

    def complete_inventory_pass(self, done: InventoryPass) -> None:
        raise NotImplementedError

    def last_inventory_pass(self) -> InventoryPass | None:
        raise NotImplementedError

    def inventory(
        self, *, image: str | None = None, namespace: str | None = None, digest: str | None = None
    ) -> list[InventoryEntry]:
        raise NotImplementedError

    def prune_inventory(self, last_seen_before: float) -> int:
        raise NotImplementedError

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
