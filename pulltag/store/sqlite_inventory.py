"""The inventory of running digests in the SQLite store (a mixin of `SQLiteStore`, kept apart so each
module stays small). One row per (image, digest, namespace); the upsert does `merge_sighting` in SQL."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from pulltag.store.base import (
    InventoryEntry,
    InventoryPass,
    Sighting,
    canonical_sighting,
    ledger_image,
)

INVENTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory (
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    namespace TEXT NOT NULL,
    pods INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (image, digest, namespace)
);
CREATE INDEX IF NOT EXISTS inventory_by_last_seen ON inventory (last_seen);
CREATE INDEX IF NOT EXISTS inventory_by_digest ON inventory (digest);
CREATE INDEX IF NOT EXISTS inventory_by_namespace ON inventory (namespace);
CREATE TABLE IF NOT EXISTS inventory_pass (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    started_at REAL NOT NULL,
    completed_at REAL NOT NULL,
    digests INTEGER NOT NULL
);
"""

# merge_sighting: earliest first_seen, latest last_seen, the new count unless it is 0 (unknown).
_UPSERT = (
    "INSERT INTO inventory (image, digest, namespace, pods, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (image, digest, namespace) DO UPDATE SET"
    " pods = CASE WHEN excluded.pods > 0 THEN excluded.pods ELSE inventory.pods END,"
    " first_seen = min(inventory.first_seen, excluded.first_seen),"
    " last_seen = max(inventory.last_seen, excluded.last_seen)"
)


class _Transactions(Protocol):
    """What the mixin needs of `SQLiteStore`: a read connection and a `BEGIN IMMEDIATE` transaction."""

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...


class SQLiteInventory:
    """The inventory methods of `Store`, over the transactions `SQLiteStore` provides."""

    def record_sightings(self: _Transactions, sightings: Sequence[Sighting]) -> None:
        rows = [
            (s.image, s.digest, s.namespace, s.pods, s.seen_at, s.seen_at)
            for s in map(canonical_sighting, sightings)
        ]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(_UPSERT, rows)

    def complete_inventory_pass(self: _Transactions, done: InventoryPass) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO inventory_pass (one, started_at, completed_at, digests)"
                " VALUES (1, ?, ?, ?)",
                (done.started_at, done.completed_at, done.digests),
            )

    def last_inventory_pass(self: _Transactions) -> InventoryPass | None:
        with self._read() as conn:
            row = conn.execute("SELECT started_at, completed_at, digests FROM inventory_pass").fetchone()
        return None if row is None else InventoryPass(float(row[0]), float(row[1]), int(row[2]))

    def inventory(
        self: _Transactions,
        *,
        image: str | None = None,
        namespace: str | None = None,
        digest: str | None = None,
    ) -> list[InventoryEntry]:
        clauses: list[str] = []
        params: list[Any] = []
        image = None if image is None else ledger_image(image)
        for column, value in (("image", image), ("digest", digest), ("namespace", namespace)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT image, digest, namespace, pods, first_seen, last_seen FROM inventory"
                f"{where} ORDER BY image, digest, namespace",
                params,
            ).fetchall()
        return list(_entries(rows))

    def prune_inventory(self: _Transactions, last_seen_before: float) -> int:
        with self._write() as conn:
            return int(
                conn.execute("DELETE FROM inventory WHERE last_seen < ?", (last_seen_before,)).rowcount
            )


def _entries(rows: Sequence[Sequence[Any]]) -> Iterator[InventoryEntry]:
    for image, digest, namespace, pods, first_seen, last_seen in rows:
        yield InventoryEntry(
            str(image), str(digest), str(namespace), int(pods), float(first_seen), float(last_seen)
        )
