"""The state store interface shared by the webhook and the listener, and its plain-data records.

Two backends implement it (`sqlite.py`, `redis.py`); `open_store(url)` picks one by URL. Every method
either does its job or raises `StoreUnavailable` (the backend cannot be reached in time) or
`StoreError` (anything else the backend refused); callers never see a driver's own exception.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["created", "exists", "skipped", "failed", "dry-run"]
OUTCOMES: tuple[Outcome, ...] = ("created", "exists", "skipped", "failed", "dry-run")


def redact_url(url: str) -> str:
    """The URL with any password replaced, so it can be named in errors and logs."""
    return re.sub(r"(?<=://)([^:/@]*):[^@/]*@", r"\1:***@", url)


class StoreError(Exception):
    """The store refused an operation (not a connectivity problem)."""


class StoreUnavailable(StoreError):
    """The store could not be reached within its timeout. The message names the URL, password redacted."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"store unavailable: {self.url}: {reason}")


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

    # --- lifecycle ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    @abc.abstractmethod
    def close(self) -> None: ...
