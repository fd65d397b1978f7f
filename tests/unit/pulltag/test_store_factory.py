"""`open_store(settings.store)`: the section's settings reach the backend, and `create=False` (the
read-only commands) never creates a SQLite file or its folders."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pulltag.config import StoreSettings
from pulltag.store import LedgerEntry, StoreMissing, open_store


def _entry(i: int) -> LedgerEntry:
    now = time.time()
    return LedgerEntry(
        image="r.io/shop/web",
        digest="sha256:" + f"{i:02x}" * 32,
        tag=f"deployed_{i}",
        namespace="shop",
        pod=f"web-{i}",
        node="node-1",
        pulled_at=now + i,
        tagged_at=now + i,
        outcome="created",
    )


def test_the_store_section_reaches_the_backend(tmp_path: Path) -> None:
    store = open_store(StoreSettings(url=f"sqlite:///{tmp_path}/s.db", ledger_max_entries=2))
    try:
        for i in range(4):
            store.append_ledger(_entry(i))
        assert [e.tag for e in store.query_ledger(limit=10)] == ["deployed_3", "deployed_2"]
    finally:
        store.close()


def test_read_only_open_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a/b/pulltag.db"
    with pytest.raises(StoreMissing) as info:
        open_store(StoreSettings(url=url), create=False)
    assert str(info.value).startswith(f"store {url} does not exist (no file {tmp_path}/a/b/pulltag.db)")
    assert not (tmp_path / "a").exists()


def test_read_only_open_reads_an_existing_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pulltag.db"
    writer = open_store(url)
    writer.append_ledger(_entry(1))
    writer.close()
    reader = open_store(StoreSettings(url=url), create=False)
    try:
        assert [e.tag for e in reader.query_ledger()] == ["deployed_1"]
    finally:
        reader.close()
