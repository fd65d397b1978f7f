"""pytest fixtures for real servers: redis-server (and, from the registry harness, docker-registry)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.procs import MissingBinary
from tests.harness.redis import RedisServer


def _start_redis(workdir: Path, password: str | None = None) -> RedisServer:
    try:
        return RedisServer(workdir, password=password).start()
    except MissingBinary as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests take their own db via `redis_url`."""
    server = _start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


_next_db = iter(range(10**9))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean Redis database for one test (db 0 is left alone; dbs are flushed before use)."""
    import redis

    db = 1 + next(_next_db) % 15
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, db=db)
    client.flushdb()
    client.close()
    yield redis_server.url(db)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that kill or restart it."""
    server = _start_redis(tmp_path / "redis")
    yield server
    server.stop()
