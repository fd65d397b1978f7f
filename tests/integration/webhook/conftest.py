"""Fixtures: `pulltag webhook` under real gunicorn over TLS, with an SQLite file or a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulltag.store import Store, open_store
from tests.harness.webhook import WebhookServer, make_certs

CONFIG: dict[str, Any] = {
    "registries": [{"host": "harbor.example.com", "type": "harbor"}, {"host": "registry.local:5000"}],
}

StartServer = Callable[..., WebhookServer]


@pytest.fixture(scope="session")
def shared_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("webhook-certs"))


@pytest.fixture
def start_server(tmp_path: Path, shared_certs: Path) -> Iterator[StartServer]:
    """Start servers for one test; each is stopped at the end (and must exit 0 on SIGTERM)."""
    started: list[WebhookServer] = []

    def start(store_url: str | None = None, **kwargs: Any) -> WebhookServer:
        kwargs.setdefault("certs", shared_certs)
        kwargs.setdefault("config", CONFIG)
        workdir = tmp_path / f"webhook-{len(started)}"
        url = store_url or f"sqlite:///{tmp_path}/pulltag-{len(started)}.db"
        server = WebhookServer(workdir, url, extra_env={"TMPDIR": str(_tmpdir(workdir))}, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def _tmpdir(workdir: Path) -> Path:
    path = workdir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def store_for() -> Iterator[Callable[[str], Store]]:
    opened: list[Store] = []

    def open_(url: str) -> Store:
        store = open_store(url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
