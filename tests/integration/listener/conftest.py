"""Fixtures for the listener's integration tests: the fake API server, a real docker-registry, a
real Redis (`redis_url`, registered project-wide) or SQLite store, and listeners wired to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The harness fixtures, imported here while tests/conftest.py does not register them project-wide
# (pytest_plugins is only allowed in the top-level conftest).
from tests.harness.fixtures_kube import kubeapi, kubeconfig  # noqa: F401
from tests.harness.fixtures_registry import oci_registry  # noqa: F401
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.registry import RegistryServer
from tests.integration.listener.helpers import Env, RunningListener


@pytest.fixture
def env(
    kubeapi: FakeKubeAPI,  # noqa: F811
    kubeconfig: str,  # noqa: F811
    oci_registry: RegistryServer,  # noqa: F811
    redis_url: str,
    tmp_path: Path,
) -> Iterator[Env]:
    environment = Env(kubeapi, kubeconfig, oci_registry, redis_url, tmp_path)
    yield environment
    environment.close()


@pytest.fixture
def start_listener(env: Env) -> Callable[..., RunningListener]:
    return env.start_listener
