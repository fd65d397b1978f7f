"""Fixtures for the fake API server's fidelity tests.

The fixtures are imported (not registered with ``pytest_plugins``, which pytest rejects in a
non-root conftest); if the project conftest registers ``tests.harness.fixtures_kube`` too, these
same functions simply shadow it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.harness.fixtures_kube import kubeapi, kubeconfig

__all__ = ["core", "kubeapi", "kubeconfig"]


@pytest.fixture
def api_client(kubeconfig: str) -> Iterator[client.ApiClient]:
    """A real kubernetes ApiClient configured by ``load_kube_config`` from the harness kubeconfig."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)
