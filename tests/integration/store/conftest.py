"""The `store` fixture: every contract test runs against both backends (SQLite file, real Redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulltag.store import Store, open_store

StoreFactory = Callable[..., Store]


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # a directory that does not exist yet: the store must create it
        return f"sqlite:///{tmp_path}/state/dir/pulltag.db"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def make_store(store_url: str) -> Iterator[StoreFactory]:
    """Open stores on the test's backend with non-default settings; all are closed at teardown."""
    opened: list[Store] = []

    def make(**kwargs: Any) -> Store:
        store = open_store(store_url, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()
