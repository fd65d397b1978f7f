"""pytest fixtures for registries: real docker-registry in three auth modes, and a fake Harbor.

- `oci_registry`: anonymous docker-registry (session-scoped)
- `htpasswd_registry`: docker-registry with bcrypt htpasswd users `admin` and `reader` (session)
- `token_registry`: docker-registry with the harness's token server; `admin` may pull and push,
  `reader` may only pull; refresh token `admin-refresh-token-0123456789` (session)
- `fake_harbor` / `fake_harbor_tls`: a fresh fake Harbor per test (plain HTTP / TLS with its CA file)
- `registry_backend`: parametrised over all of the above, for contract tests

Each yields an object with `host` ("127.0.0.1:PORT"), `settings(user)` -> `RegistrySettings` (a
dockerconfigjson credentials file is written for the user), `credentials_file(user)`,
`new_repository()`, `seed_image(repository, tag=None) -> digest`, `set_tag`, `tag_digest`, and for the
real registries `push_image`, `push_index`, `push_blob`, `push_manifest`, `get_manifest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.harbor import FakeHarbor
from tests.harness.procs import MissingBinary
from tests.harness.registry import Mode, RegistryServer

BACKENDS = ("oci_registry", "htpasswd_registry", "token_registry", "fake_harbor")


def _start_registry(workdir: Path, mode: Mode) -> RegistryServer:
    try:
        return RegistryServer(workdir, mode).start()
    except MissingBinary as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = _start_registry(tmp_path_factory.mktemp("registry-anonymous"), "anonymous")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = _start_registry(tmp_path_factory.mktemp("registry-htpasswd"), "htpasswd")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = _start_registry(tmp_path_factory.mktemp("registry-token"), "token")
    yield server
    server.stop()


@pytest.fixture
def fake_harbor(tmp_path: Path) -> Iterator[FakeHarbor]:
    harbor = FakeHarbor(tmp_path / "harbor").start()
    yield harbor
    harbor.stop()


@pytest.fixture
def fake_harbor_tls(tmp_path: Path) -> Iterator[FakeHarbor]:
    harbor = FakeHarbor(tmp_path / "harbor-tls", tls=True).start()
    yield harbor
    harbor.stop()


@pytest.fixture(params=BACKENDS)
def registry_backend(request: pytest.FixtureRequest) -> Any:
    """Each backend in turn: the contract suite runs against all of them."""
    return request.getfixturevalue(request.param)
