"""Fixtures and helpers of the security checks: a World per module (forgeries, URL escapes), a World with a
password-protected Redis (credentials), and small readers for metrics, tags and the servers' records."""

from __future__ import annotations

import secrets
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.redis import RedisServer
from tests.harness.webhook import SERVICE_HOST
from tests.harness.world import World

# imageid_wait_seconds: how long the listener waits for a missing imageID; short so "no imageID" is
# decided within the test's budget.
IMAGEID_WAIT_SECONDS = 2
REDIS_PASSWORD = "redis-pw-" + secrets.token_hex(8)


class SecretRedisWorld(World):
    """The World with a password-protected redis-server as its store (the harness's own World starts
    Redis without one); everything else is the World as is."""

    def _start_store(self) -> None:
        self.redis = RedisServer(self.workdir / "redis", password=REDIS_PASSWORD).start()
        self._stack.callback(self.redis.stop)
        self.store_url = self.redis.url(0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One World per test module (Redis store, token-auth docker-registry, fake Harbor)."""
    w = World(
        tmp_path_factory.mktemp("security-world"),
        listener_config={"imageid_wait_seconds": IMAGEID_WAIT_SECONDS},
    )
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def secret_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretRedisWorld]:
    w = SecretRedisWorld(
        tmp_path_factory.mktemp("security-secret-world"),
        listener_config={"imageid_wait_seconds": IMAGEID_WAIT_SECONDS},
    )
    w.start()
    yield w
    w.stop()


# ---------------------------------------------------------------------------------------------------
# Readers


def deployed_tags(world: World, repository: str) -> dict[str, str]:
    """`deployed_*` tags of a repository in the real registry, with their digests."""
    if not world.registry.list_tags(repository):
        return {}
    return {t: d for t, d in world.registry_tags(repository).items() if t.startswith("deployed_")}


def pulls_total(world: World) -> float:
    """Every pull the listener has decided on, whatever the outcome."""
    return world.metric("pulltag_pulls_total")


def registry_operations(world: World) -> float:
    """Registry operations the listener has timed (every registry, every operation)."""
    return world.metric("pulltag_registry_request_duration_seconds_count")


def wait_idle(world: World) -> None:
    world.wait_for(lambda: world.metric("pulltag_queue_depth") == 0, 30, "the listener's queue to drain")


def https_get(port: int, path: str, ca_file: Path, server_hostname: str = SERVICE_HOST) -> str:
    """GET over TLS as the API server connects to the webhook (SNI = the Service name); the whole body."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
        chunks: list[bytes] = []
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def set_container_status(world: World, namespace: str, name: str, statuses: list[dict[str, Any]]) -> None:
    """Write `containerStatuses` as the kubelet's status manager would (in-process, as the admin)."""
    world.api.patch(
        "pods", name, {"status": {"phase": "Running", "containerStatuses": statuses}}, namespace,
        subresource="status",
    )  # fmt: skip


def running_status(container: str, image: str, image_id: str) -> dict[str, Any]:
    return {
        "name": container,
        "image": image,
        "imageID": image_id,
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": "2026-11-26T10:15:02Z"}},
        "containerID": "containerd://" + secrets.token_hex(32),
    }
