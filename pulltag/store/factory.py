"""Pick a store backend by URL, with the settings of the `store` section."""

from __future__ import annotations

from pathlib import Path

from pulltag.config import StoreSettings
from pulltag.logs import redact_url
from pulltag.store.base import Store, StoreError


class StoreMissing(StoreError):
    """A read-only command found no store at the configured URL (and created none)."""

    def __init__(self, url: str, where: str) -> None:
        self.url = redact_url(url)
        super().__init__(
            f"store {self.url} does not exist (no file {where}); read-only commands create none: "
            "check store.url or PULLTAG_STORE_URL"
        )


def open_store(
    store: StoreSettings | str,
    *,
    create: bool = True,
    timeout_seconds: float | None = None,
    admission_ttl_seconds: float | None = None,
    ledger_max_entries: int | None = None,
    checkpoint_in_background: bool = False,
) -> Store:
    """The store `settings.store` names: `sqlite:///path/file.db` or `redis://[:password@]host:port/db`
    (`rediss://` for TLS).

    A bare URL takes the section's defaults (tests and benchmarks); the keyword values replace single
    settings. `create=False` (read-only commands) refuses a SQLite file that does not exist instead of
    creating it and its directories: reading an empty new store would only hide a mistyped path.
    `checkpoint_in_background` (SQLite only; the webhook's): no commit waits for a WAL checkpoint, a
    thread does them (`pulltag.store.sqlite_checkpoint`).
    """
    settings = StoreSettings(url=store) if isinstance(store, str) else store
    url = settings.url
    timeout = settings.timeout_seconds if timeout_seconds is None else timeout_seconds
    ttl = settings.admission_ttl_seconds if admission_ttl_seconds is None else admission_ttl_seconds
    most = settings.ledger_max_entries if ledger_max_entries is None else ledger_max_entries
    if url.startswith("sqlite:///"):
        from pulltag.store.sqlite import SQLiteStore, sqlite_path

        if not create and not Path(sqlite_path(url)).is_file():
            raise StoreMissing(url, sqlite_path(url))
        return SQLiteStore(
            url,
            timeout_seconds=timeout,
            admission_ttl_seconds=ttl,
            ledger_max_entries=most,
            checkpoint_in_background=checkpoint_in_background,
        )
    if url.startswith(("redis://", "rediss://")):
        from pulltag.store.redis import RedisStore

        return RedisStore(url, timeout_seconds=timeout, admission_ttl_seconds=ttl, ledger_max_entries=most)
    raise StoreError("store URL must start with sqlite:///, redis:// or rediss://")
