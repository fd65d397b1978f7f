"""SQLite-only behaviour: WAL mode, lazy deletion of expired rows, per-thread connections."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from pulltag.store import AdmissionRecord
from pulltag.store.sqlite import SQLiteStore
from tests.harness.procs import wait_for


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_wal_mode_and_parent_directory_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "pulltag.db"
    store = SQLiteStore(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    store.close()


def test_schema_creation_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pulltag.db"
    first = SQLiteStore(url)
    first.put_admission(AdmissionRecord(uid="u", namespace="n", name="p"))
    second = SQLiteStore(url)
    assert second.get_admission("u") is not None
    first.close()
    second.close()


def test_expired_rows_are_deleted_lazily_by_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "pulltag.db"
    store = SQLiteStore(f"sqlite:///{path}")
    store.put_admission(AdmissionRecord(uid="u", namespace="n", name="p"), ttl_seconds=0.2)
    store.claim("c", 0.2)
    store.mark_seen("s", 0.2)
    wait_for(lambda: store.get_admission("u") is None and not store.is_seen("s"), 5, "expiry")
    # expired but not yet deleted: reads ignore them
    assert _count(path, "admissions") == 1
    # a new store object purges on its first write
    other = SQLiteStore(f"sqlite:///{path}")
    other.claim("new", 60)
    assert _count(path, "admissions") == 0
    assert _count(path, "seen") == 0
    assert _count(path, "claims") == 1  # only the live one
    store.close()
    other.close()


def test_one_connection_per_thread(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/pulltag.db")
    seen: list[sqlite3.Connection] = []
    # All four alive at once: a finished thread's connection is closed and may be replaced.
    together = threading.Barrier(4)

    def work() -> None:
        seen.append(store._conn())
        store.claim(f"k{threading.get_ident()}", 60)
        together.wait(timeout=30)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(conn) for conn in seen}) == 4
    store.close()


def test_ledger_count_stays_exact_under_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "pulltag.db"
    store = SQLiteStore(f"sqlite:///{path}", ledger_max_entries=10)
    from tests.integration.store.test_contract import entry

    for i in range(25):
        store.append_ledger(entry(i, tagged_at=float(i)))
    assert _count(path, "ledger") == 10
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT n FROM ledger_count").fetchone()[0] == 10
    conn.close()
    store.close()


def _open_files_under(directory: Path) -> int:
    """File descriptors of this process open on files in `directory` (the database, its WAL)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if Path(fd.readlink()).parent == directory:
                count += 1
        except OSError:
            continue  # closed while we looked
    return count


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    """One short-lived thread per call (as the listener's health server answers each probe) must not
    leave one open connection per thread behind (found by the observability work: a file-descriptor
    leak in the single-pod install)."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'pulltag.db'}")
    store.ping()
    per_connection = _open_files_under(tmp_path)
    assert per_connection >= 1
    for _ in range(40):
        thread = threading.Thread(target=store.ping)
        thread.start()
        thread.join()
    # This thread's connection, and the last thread's until the next one opens: never one per thread.
    assert _open_files_under(tmp_path) <= 2 * per_connection
    store.close()
    assert _open_files_under(tmp_path) == 0
