"""The state store interface shared by the webhook and the listener, and its plain-data records.

Two backends implement it (`sqlite.py`, `redis.py`); `open_store(url)` picks one by URL. Every method
either does its job or raises `StoreUnavailable` (the backend cannot be reached in time) or
`StoreError` (anything else the backend refused); callers never see a driver's own exception.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pulltag.images import canonical_image_name
from pulltag.logs import redact_url

# The last four are release outcomes (retention): "released" the tag was deleted (or found gone),
# "unsupported" the registry refuses tag deletion, "moved" the tag points at another digest now (left
# alone), "immutable" the registry protects the tag (kept).
Outcome = Literal[
    "created", "exists", "skipped", "failed", "dry-run", "released", "unsupported", "moved", "immutable"
]
OUTCOMES: tuple[Outcome, ...] = (
    "created",
    "exists",
    "skipped",
    "failed",
    "dry-run",
    "released",
    "unsupported",
    "moved",
    "immutable",
)


class StoreError(Exception):
    """The store refused an operation (not a connectivity problem)."""


class StoreUnavailable(StoreError):
    """The store could not be reached within its timeout. The message names the URL, password redacted."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"store unavailable: {self.url}: {reason}")

    def __reduce__(self) -> tuple[type[StoreUnavailable], tuple[str, str]]:
        # Pickled across processes (a multiprocessing pool hangs on an exception it cannot unpickle);
        # the URL is already redacted.
        return (type(self), (self.url, self.reason))


@dataclass(frozen=True)
class AdmissionRecord:
    """What the validating webhook saw of a pod at CREATE: the images as admitted, per container."""

    uid: str
    namespace: str
    name: str
    # kind ("containers" | "initContainers" | "ephemeralContainers") -> container name -> image
    images: dict[str, dict[str, str]] = field(default_factory=dict)
    owner: str | None = None  # "Kind/name" of the controller owner reference, if any
    node: str | None = None
    admitted_at: float = 0.0  # unix seconds

    def image_of(self, kind: str, container: str) -> str | None:
        return self.images.get(kind, {}).get(container)


@dataclass(frozen=True)
class LedgerEntry:
    """One tagging outcome. `image` is `registry/repository` (no tag), `digest` the exact manifest digest."""

    image: str
    digest: str
    tag: str
    namespace: str
    pod: str
    node: str
    pulled_at: float
    tagged_at: float
    outcome: Outcome
    reason: str = ""
    container: str = ""


@dataclass(frozen=True)
class Sighting:
    """A digest seen running: `pods` pods of `namespace` ran it at `seen_at` (unix seconds). A refresh
    from a `Pulled` event passes pods=0 (unknown), which keeps the count already stored."""

    image: str  # `registry/repository`, stored under `ledger_image` like LedgerEntry.image
    digest: str
    namespace: str
    pods: int
    seen_at: float


@dataclass(frozen=True)
class InventoryEntry:
    """What the inventory knows of one digest in one namespace."""

    image: str
    digest: str
    namespace: str
    pods: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class InventoryPass:
    """One complete inventory pass: the whole paginated pod list was read without an error. A digest runs
    now in a namespace iff its entry's `last_seen >= started_at` of the last pass."""

    started_at: float
    completed_at: float
    digests: int


def merge_sighting(old: InventoryEntry | None, seen: Sighting) -> InventoryEntry:
    """The entry after `seen` (what every backend computes): first_seen the earliest sighting, last_seen
    the latest, pods the latest written count unless that is 0 (unknown), which keeps the old one."""
    if old is None:
        return InventoryEntry(seen.image, seen.digest, seen.namespace, seen.pods, seen.seen_at, seen.seen_at)
    return InventoryEntry(
        old.image,
        old.digest,
        old.namespace,
        seen.pods if seen.pods > 0 else old.pods,
        min(old.first_seen, seen.seen_at),
        max(old.last_seen, seen.seen_at),
    )


def canonical_sighting(seen: Sighting) -> Sighting:
    """The sighting as the inventory keeps it (image under `ledger_image`); refuses a negative count."""
    if seen.pods < 0:
        raise ValueError(f"a sighting counts pods >= 0, got {seen.pods}")
    image = ledger_image(seen.image)
    return seen if image == seen.image else dataclasses.replace(seen, image=image)


class Store(abc.ABC):
    """The shared state store. Implementations are safe to use from many threads and processes."""

    url: str

    # --- admission records -------------------------------------------------------------------
    @abc.abstractmethod
    def put_admission(self, record: AdmissionRecord, ttl_seconds: float | None = None) -> None:
        """Write (or overwrite) the record for `record.uid`; it expires after the TTL (default: configured)"""

    def put_admissions(self, records: Sequence[AdmissionRecord], ttl_seconds: float | None = None) -> None:
        """Write several records at once (the webhook's group commit). Backends override this with one
        transaction or one round trip; all records land or the call raises."""
        for record in records:
            self.put_admission(record, ttl_seconds)

    @abc.abstractmethod
    def get_admission(self, uid: str) -> AdmissionRecord | None: ...

    @abc.abstractmethod
    def find_admission(self, namespace: str, name: str) -> AdmissionRecord | None:
        """The newest live record of the pod with this namespace and name."""

    @abc.abstractmethod
    def list_admissions(self, namespace: str | None = None, limit: int = 100) -> list[AdmissionRecord]:
        """Live records, newest first."""

    # --- claims and seen markers ---------------------------------------------------------------
    @abc.abstractmethod
    def claim(self, key: str, ttl_seconds: float) -> bool:
        """True for exactly one caller per key until the claim expires or is released."""

    @abc.abstractmethod
    def release(self, key: str) -> None: ...

    @abc.abstractmethod
    def mark_seen(self, key: str, ttl_seconds: float) -> bool:
        """Mark `key` seen for the TTL; True if it was not seen before (atomic)."""

    @abc.abstractmethod
    def is_seen(self, key: str) -> bool: ...

    # --- tag ledger ------------------------------------------------------------------------------
    @abc.abstractmethod
    def append_ledger(self, entry: LedgerEntry) -> None:
        """Append an outcome; past the configured maximum the oldest entries are dropped."""

    @abc.abstractmethod
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
        """Entries newest first (by tagged_at), filtered by exact image name, digest, namespace, pod name and
        time."""

    # --- inventory of running digests --------------------------------------------------------------
    @abc.abstractmethod
    def record_sightings(self, sightings: Sequence[Sighting]) -> None:
        """Upsert every sighting as `merge_sighting` says, atomically (all land or the call raises)."""

    @abc.abstractmethod
    def complete_inventory_pass(self, done: InventoryPass) -> None:
        """Record a complete pass; it replaces the previous one."""

    @abc.abstractmethod
    def last_inventory_pass(self) -> InventoryPass | None: ...

    @abc.abstractmethod
    def inventory(
        self, *, image: str | None = None, namespace: str | None = None, digest: str | None = None
    ) -> list[InventoryEntry]:
        """Every entry matching the filters (image compared under `ledger_image`), ordered by image,
        digest, namespace."""

    @abc.abstractmethod
    def prune_inventory(self, last_seen_before: float) -> int:
        """Drop the entries whose last_seen is before the time; returns how many were dropped."""

    # --- lifecycle ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    @abc.abstractmethod
    def close(self) -> None: ...


# --- (de)serialisation, one JSON shape for every backend ----------------------------------------------
# Plain dicts spelled out rather than dataclasses.asdict, which deep-copies: the webhook writes one
# record per admitted pod.
def record_to_json(record: AdmissionRecord) -> str:
    fields = {
        "uid": record.uid,
        "namespace": record.namespace,
        "name": record.name,
        "images": record.images,
        "owner": record.owner,
        "node": record.node,
        "admitted_at": record.admitted_at,
    }
    return json.dumps(fields)


def record_from_json(text: str | bytes) -> AdmissionRecord:
    d = json.loads(text)
    return AdmissionRecord(
        uid=d["uid"],
        namespace=d["namespace"],
        name=d["name"],
        images={str(k): {str(c): str(i) for c, i in v.items()} for k, v in d.get("images", {}).items()},
        owner=d.get("owner"),
        node=d.get("node"),
        admitted_at=float(d.get("admitted_at", 0.0)),
    )


def entry_to_json(entry: LedgerEntry, *, ensure_ascii: bool = True) -> str:
    """`ensure_ascii=False` for Redis, whose script decodes the JSON to name index keys (see redis.py)."""
    fields = {
        "image": entry.image,
        "digest": entry.digest,
        "tag": entry.tag,
        "namespace": entry.namespace,
        "pod": entry.pod,
        "node": entry.node,
        "pulled_at": entry.pulled_at,
        "tagged_at": entry.tagged_at,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "container": entry.container,
    }
    return json.dumps(fields, ensure_ascii=ensure_ascii)


def entry_from_json(text: str | bytes) -> LedgerEntry:
    d: dict[str, Any] = json.loads(text)
    return LedgerEntry(
        image=d["image"],
        digest=d["digest"],
        tag=d["tag"],
        namespace=d["namespace"],
        pod=d["pod"],
        node=d["node"],
        pulled_at=float(d["pulled_at"]),
        tagged_at=float(d["tagged_at"]),
        outcome=cast(Outcome, d["outcome"]),
        reason=d.get("reason", ""),
        container=d.get("container", ""),
    )


def ledger_image(image: str) -> str:
    """The ledger's key for an image: `registry/repository` with the registry's canonical name, so an
    entry written for `Harbor.Example.com:443/p/app` is found by `harbor.example.com/p/app`."""
    return canonical_image_name(image)


def canonical_entry(entry: LedgerEntry) -> LedgerEntry:
    """The entry as the ledger keeps it (image under `ledger_image`)."""
    image = ledger_image(entry.image)
    return entry if image == entry.image else dataclasses.replace(entry, image=image)
