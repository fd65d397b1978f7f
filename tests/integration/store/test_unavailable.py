"""An unreachable or refusing store raises StoreUnavailable / StoreError, promptly, never a driver error.

The only timing assertions here are generous upper bounds (3x the store timeout) proving a call does
not hang; nothing asserts that a call is fast.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pulltag.store import AdmissionRecord, LedgerEntry, Store, StoreError, StoreUnavailable, open_store
from tests.harness.procs import free_port, wait_for
from tests.harness.redis import RedisServer

TIMEOUT = 0.5  # the store timeout used here, seconds
BOUND = 3 * TIMEOUT  # no call may take longer than this
PASSWORD = "s3cr3t-Pa55word"

REC = AdmissionRecord(uid="u", namespace="ns", name="p", images={"containers": {"a": "i:1"}})
ENTRY = LedgerEntry(
    image="r/a", digest="sha256:1", tag="t", namespace="ns", pod="p", node="n",
    pulled_at=1.0, tagged_at=2.0, outcome="created",
)  # fmt: skip

# Every method of the interface, as a call on a store.
CALLS: dict[str, Callable[[Store], object]] = {
    "ping": lambda s: s.ping(),
    "put_admission": lambda s: s.put_admission(REC),
    "put_admissions": lambda s: s.put_admissions([REC, REC]),
    "get_admission": lambda s: s.get_admission("u"),
    "find_admission": lambda s: s.find_admission("ns", "p"),
    "list_admissions": lambda s: s.list_admissions(),
    "claim": lambda s: s.claim("k", 10),
    "release": lambda s: s.release("k"),
    "mark_seen": lambda s: s.mark_seen("k", 10),
    "is_seen": lambda s: s.is_seen("k"),
    "append_ledger": lambda s: s.append_ledger(ENTRY),
    "query_ledger": lambda s: s.query_ledger(image="r/a"),
}


def assert_unavailable(store: Store, call: Callable[[Store], object], url_shown: str) -> StoreUnavailable:
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        call(store)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"took {elapsed:.2f}s, the store timeout is {TIMEOUT}s"
    exc = info.value
    assert PASSWORD not in str(exc) and PASSWORD not in repr(exc)
    assert url_shown in str(exc)
    return exc


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never answers a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


# --- Redis -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(CALLS))
def test_redis_refused_port(method: str) -> None:
    port = free_port()  # nobody listens here
    store = open_store(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", timeout_seconds=TIMEOUT)
    exc = assert_unavailable(store, CALLS[method], f"redis://:***@127.0.0.1:{port}/0")
    assert PASSWORD not in repr(store) and PASSWORD not in store.url
    assert exc.url == f"redis://:***@127.0.0.1:{port}/0"
    store.close()


@pytest.mark.parametrize(
    "method", ["ping", "claim", "put_admission", "put_admissions", "append_ledger", "list_admissions"]
)
def test_redis_blackhole_times_out(blackhole: int, method: str) -> None:
    store = open_store(f"redis://user:{PASSWORD}@127.0.0.1:{blackhole}/3", timeout_seconds=TIMEOUT)
    assert_unavailable(store, CALLS[method], f"redis://user:***@127.0.0.1:{blackhole}/3")
    store.close()


def test_rediss_url_accepted_and_unreachable_is_unavailable() -> None:
    port = free_port()
    store = open_store(f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", timeout_seconds=TIMEOUT)
    assert_unavailable(store, CALLS["ping"], f"rediss://:***@127.0.0.1:{port}/0")


def test_redis_with_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    try:
        good = open_store(server.url(2), timeout_seconds=TIMEOUT)
        assert good.claim("k", 10) is True
        bad_url = server.url(2).replace(PASSWORD, "wrong-password")
        bad = open_store(bad_url, timeout_seconds=TIMEOUT)
        exc = assert_unavailable(bad, CALLS["claim"], "redis://:***@127.0.0.1")
        assert "wrong-password" not in str(exc)
        none = open_store(f"redis://127.0.0.1:{server.port}/2", timeout_seconds=TIMEOUT)
        with pytest.raises(StoreError) as info:
            none.claim("k", 10)
        assert PASSWORD not in str(info.value)
        for s in (good, bad, none):
            s.close()
    finally:
        server.stop()


def test_redis_killed_then_restarted(own_redis: RedisServer) -> None:
    store = open_store(own_redis.url(0), timeout_seconds=TIMEOUT)
    assert store.claim("before", 60) is True
    own_redis.kill()
    for method in sorted(CALLS):
        assert_unavailable(store, CALLS[method], own_redis.url(0))
    own_redis.restart()

    def works() -> bool:
        return store.claim("after", 60)

    wait_for(works, 10, "the store to work again after the restart")
    store.put_admission(REC)
    assert store.get_admission("u") == REC
    store.close()


def test_redis_bad_url_is_store_error() -> None:
    with pytest.raises(StoreError):
        open_store("redis://127.0.0.1:notaport/0")


def test_redis_server_error_is_store_error(redis_url: str) -> None:
    import redis

    store = open_store(redis_url, timeout_seconds=TIMEOUT)
    # a key of the wrong type makes the server refuse the command: a StoreError, not a driver error
    client = redis.Redis.from_url(redis_url)
    client.set("pulltag:adm:idx", "not a zset")
    client.close()
    with pytest.raises(StoreError) as info:
        store.list_admissions()
    assert not isinstance(info.value, StoreUnavailable)
    store.close()


# --- SQLite ----------------------------------------------------------------------------------------------
def test_sqlite_unable_to_open_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    url = f"sqlite:///{tmp_path}/file/sub/pulltag.db"
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        open_store(url, timeout_seconds=TIMEOUT)
    assert time.monotonic() - start < BOUND
    assert url in str(info.value)


def test_sqlite_unable_to_open_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{tmp_path}/dir.db", timeout_seconds=TIMEOUT)


@pytest.mark.parametrize(
    "method", ["put_admission", "put_admissions", "claim", "release", "mark_seen", "append_ledger"]
)
def test_sqlite_locked_beyond_busy_timeout(tmp_path: Path, method: str) -> None:
    url = f"sqlite:///{tmp_path}/pulltag.db"
    store = open_store(url, timeout_seconds=TIMEOUT)
    holder = sqlite3.connect(tmp_path / "pulltag.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock and does not let go
    try:
        assert_unavailable(store, CALLS[method], url)
        # readers are not blocked by a writer in WAL mode
        assert store.get_admission("u") is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.claim("k2", 10) is True  # and the store recovers once the lock is gone
    store.close()


def test_sqlite_corrupt_file_is_store_error(tmp_path: Path) -> None:
    path = tmp_path / "pulltag.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{path}", timeout_seconds=TIMEOUT)


def test_unknown_scheme_is_store_error() -> None:
    with pytest.raises(StoreError):
        open_store("postgres://x")
