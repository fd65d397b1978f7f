"""The shared state store: admission records, claims, seen markers and the tag ledger."""

from pulltag.logs import redact_url
from pulltag.store.base import (
    OUTCOMES,
    AdmissionRecord,
    InventoryEntry,
    InventoryPass,
    LedgerEntry,
    Outcome,
    Sighting,
    Store,
    StoreError,
    StoreUnavailable,
)
from pulltag.store.factory import StoreMissing, open_store

__all__ = [
    "OUTCOMES",
    "AdmissionRecord",
    "InventoryEntry",
    "InventoryPass",
    "LedgerEntry",
    "Outcome",
    "Sighting",
    "Store",
    "StoreError",
    "StoreMissing",
    "StoreUnavailable",
    "open_store",
    "redact_url",
]
