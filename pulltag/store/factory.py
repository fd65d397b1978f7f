"""Pick a store backend by URL."""

from __future__ import annotations

from pulltag.store.base import Store, StoreError


def open_store(
    url: str,
    *,
    timeout_seconds: float = 2.0,
    admission_ttl_seconds: float = 24 * 3600,
    ledger_max_entries: int = 100_000,
) -> Store:
    """`sqlite:///path/file.db` or `redis://[:password@]host:port/db` (`rediss://` for TLS)."""
    if url.startswith("sqlite:///"):
        from pulltag.store.sqlite import SQLiteStore

        return SQLiteStore(
            url,
            timeout_seconds=timeout_seconds,
            admission_ttl_seconds=admission_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
        )
    if url.startswith(("redis://", "rediss://")):
        from pulltag.store.redis import RedisStore

        return RedisStore(
            url,
            timeout_seconds=timeout_seconds,
            admission_ttl_seconds=admission_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
        )
    raise StoreError("store URL must start with sqlite:///, redis:// or rediss://")
