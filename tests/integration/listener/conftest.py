"""Fixtures for the listener's integration tests: the fake API server, a real docker-registry and a
real Redis or SQLite store (harness fixtures registered in tests/conftest.py), and listeners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.registry import RegistryServer
from tests.integration.listener.helpers import Env, RunningListener


@pytest.fixture
def env(
    kubeapi: FakeKubeAPI,
    kubeconfig: str,
    oci_registry: RegistryServer,
    redis_url: str,
    tmp_path: Path,
) -> Iterator[Env]:
    environment = Env(kubeapi, kubeconfig, oci_registry, redis_url, tmp_path)
    yield environment
    environment.close()


@pytest.fixture(params=["redis", "sqlite"])
def store_url(request: pytest.FixtureRequest, env: Env) -> str:
    """Each store backend in turn, for the tests whose outcome rests on the store."""
    return env.redis_url if request.param == "redis" else env.sqlite_url


@pytest.fixture
def start_listener(env: Env) -> Callable[..., RunningListener]:
    return env.start_listener
