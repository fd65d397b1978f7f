"""The ledger survives a restart of the in-cluster store: a real redis-server started with the arguments of
the rendered store Deployment (manifests/ and the chart; Valkey in the cluster, the same flags and
protocol) keeps every ledger entry and admission record across a restart and across a crash once the
append-only file is written, and refuses clients without the password. The old, non-durable arguments
lose the ledger (so the test can tell the difference)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pulltag.store import open_store
from pulltag.store.base import AdmissionRecord, LedgerEntry
from tests.harness.procs import ManagedProcess, free_port, port_open, require_binary, wait_for
from tests.unit.manifests.render import copy_manifests, helm_template, kustomize, pod_spec

PASSWORD = "ledgerPassw0rd"
DIGEST = "sha256:" + "d" * 64
# What the in-cluster store ran before it was made durable.
EPHEMERAL_ARGS = ["redis-server", "--save", "", "--appendonly", "no", "--dir", "/data"]


def _store_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pulltag-redis"
    ]
    (container,) = pod_spec(deployment)["containers"]
    found: dict[str, Any] = container
    return found


@pytest.fixture(scope="module")
def rendered_containers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = copy_manifests(tmp_path_factory.mktemp("ledger-manifests"))
    return {
        "manifests": _store_container(kustomize(root / "base" / "app")),
        "chart": _store_container(helm_template({})),
    }


@pytest.fixture(scope="module")
def rendered_args(rendered_containers: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {source: list(c["args"]) for source, c in rendered_containers.items()}


class Server:
    """redis-server with a Deployment's arguments: the data dir and the password filled in."""

    def __init__(self, args: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.data = workdir / "data"
        self.data.mkdir(parents=True)
        binary = require_binary("redis-server", "redis-server")
        filled = [self._fill(a) for a in args[1:]]
        self.argv = [binary, *filled, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.process = ManagedProcess("store", self.argv, workdir)
        self.password = PASSWORD if "--requirepass" in args else None

    def _fill(self, arg: str) -> str:
        return {"$(STORE_PASSWORD)": PASSWORD, "/data": str(self.data)}.get(arg, arg)

    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> Server:
        self.process.start()
        self.process.wait_ready(lambda: port_open("127.0.0.1", self.port) and self._loaded())
        return self

    def _loaded(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        try:
            return client.info("persistence").get("loading") == 0
        except redis.exceptions.BusyLoadingError:
            return False
        finally:
            client.close()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.process.stop()


def _entry(n: int) -> LedgerEntry:
    return LedgerEntry(
        image="harbor.example.com/shop/web",
        digest=DIGEST,
        tag=f"deployed_shop_20260101-00000{n}",
        namespace="shop",
        pod=f"web-{n}",
        node="node-1",
        pulled_at=1_700_000_000.0 + n,
        tagged_at=1_700_000_001.0 + n,
        outcome="created",
    )


def _write(url: str) -> None:
    store = open_store(url)
    try:
        for n in range(5):
            store.append_ledger(_entry(n))
        store.put_admission(
            AdmissionRecord(uid="uid-1", namespace="shop", name="web-1", images={"containers": {"web": "x"}})
        )
    finally:
        store.close()


def _ledger(url: str) -> list[str]:
    store = open_store(url)
    try:
        return sorted(e.tag for e in store.query_ledger(limit=100))
    finally:
        store.close()


def _aof_holds(data: Path, marker: bytes) -> bool:
    return any(marker in p.read_bytes() for p in data.rglob("*.aof") if p.is_file())


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_ledger_survives_a_restart(
    rendered_args: dict[str, list[str]], source: str, tmp_path: Path, started: list[Server]
) -> None:
    args = rendered_args[source]
    assert args[args.index("--appendonly") + 1] == "yes"
    server = Server(args, tmp_path)
    started.append(server.start())
    _write(server.url())
    expected = [_entry(n).tag for n in range(5)]
    assert _ledger(server.url()) == expected

    assert server.process.stop() is not None  # SIGTERM, as the kubelet stops a pod
    server.start()
    assert _ledger(server.url()) == expected
    store = open_store(server.url())
    try:
        assert store.get_admission("uid-1") is not None
    finally:
        store.close()


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_ledger_survives_a_crash_once_the_append_only_file_has_it(
    rendered_args: dict[str, list[str]], source: str, tmp_path: Path, started: list[Server]
) -> None:
    server = Server(rendered_args[source], tmp_path)
    started.append(server.start())
    _write(server.url())
    # appendfsync everysec: the file has every entry within about a second
    wait_for(
        lambda: _aof_holds(server.data, _entry(4).tag.encode()), 10, "the append-only file to hold the ledger"
    )
    server.process.signal(signal.SIGKILL)
    wait_for(lambda: not server.process.running, 10, "the store to die")
    server.start()
    assert _ledger(server.url()) == [_entry(n).tag for n in range(5)]


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_the_store_requires_its_password(
    rendered_args: dict[str, list[str]], source: str, tmp_path: Path, started: list[Server]
) -> None:
    server = Server(rendered_args[source], tmp_path)
    started.append(server.start())
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
    finally:
        client.close()


def test_the_old_arguments_lose_the_ledger(tmp_path: Path, started: list[Server]) -> None:
    server = Server(EPHEMERAL_ARGS, tmp_path)
    started.append(server.start())
    _write(server.url())
    server.process.stop()
    server.start()
    assert _ledger(server.url()) == []


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_readiness_probe_needs_the_password(
    rendered_containers: dict[str, dict[str, Any]], source: str, tmp_path: Path, started: list[Server]
) -> None:
    """The rendered readiness probe (valkey-cli there, redis-cli here: same options) is ready with the
    Secret's password and not ready with another."""
    container = rendered_containers[source]
    server = Server(container["args"], tmp_path)
    started.append(server.start())
    command = list(container["readinessProbe"]["exec"]["command"])
    cli = require_binary("redis-cli", "redis-tools")
    command[-1] = command[-1].replace("valkey-cli", cli).replace("-p 6379", f"-p {server.port}")

    def probe(password: str) -> int:
        env = {**os.environ, "STORE_PASSWORD": password}
        return subprocess.run(command, env=env, capture_output=True, timeout=30, check=False).returncode

    assert probe(PASSWORD) == 0
    assert probe("wrong") != 0
