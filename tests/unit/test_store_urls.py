"""Store URL handling that needs no server: SQLite paths, Redis URL redaction."""

from __future__ import annotations

import pytest

from pulltag.logs import redact, redact_url
from pulltag.store import StoreError, open_store
from pulltag.store.redis import RedisStore
from pulltag.store.sqlite import sqlite_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/pulltag/pulltag.db", "/var/lib/pulltag/pulltag.db"),
        ("sqlite:////var/lib/pulltag/pulltag.db", "/var/lib/pulltag/pulltag.db"),
        ("sqlite:///a.db", "/a.db"),
        ("sqlite:///tmp/dir with space/é.db", "/tmp/dir with space/é.db"),
    ],
)
def test_sqlite_path_is_absolute(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:////", "sqlite://rel.db"])
def test_sqlite_url_without_file_is_rejected(url: str) -> None:
    with pytest.raises(StoreError):
        sqlite_path(url)


def test_redis_store_never_shows_its_password() -> None:
    # constructing connects nothing, so no server is needed
    store = RedisStore("redis://user:hunter2-pw@db.example:6380/4", timeout_seconds=0.1)
    assert "hunter2-pw" not in store.url
    assert "hunter2-pw" not in repr(store)
    assert store.url == "redis://user:***@db.example:6380/4"
    store.close()


def test_open_store_rejects_unknown_scheme() -> None:
    with pytest.raises(StoreError):
        open_store("memcached://x")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:hunter2-pw@db.example:6380/4", "redis://user:***@db.example:6380/4"),
        ("redis://:hunter2-pw@db.example:6379/0", "redis://:***@db.example:6379/0"),
        ("rediss://u:pass word with spaces@db:6379/0", "rediss://u:***@db:6379/0"),
        ("redis://db.example:6379/0", "redis://db.example:6379/0"),
        ("sqlite:///var/lib/pulltag/pulltag.db", "sqlite:///var/lib/pulltag/pulltag.db"),
    ],
)
def test_one_redaction_for_store_urls_and_log_lines(url: str, shown: str) -> None:
    # The store names its URL with the same pattern the log formatter masks lines with.
    assert redact_url(url) == shown
    assert redact(f"store unavailable: {url}: timed out") == f"store unavailable: {shown}: timed out"


def test_store_unavailable_survives_pickling_without_the_password() -> None:
    import pickle

    from pulltag.store import StoreUnavailable

    error = StoreUnavailable("redis://:s3cret@127.0.0.1:1/0", "connection refused")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, StoreUnavailable)
    assert str(copy) == str(error)
    assert "s3cret" not in pickle.dumps(error).decode("latin-1")
