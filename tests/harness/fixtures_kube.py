"""pytest fixtures for the fake Kubernetes API server (registered via ``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kubeapi import FakeKubeAPI


@pytest.fixture
def kubeapi() -> Iterator[FakeKubeAPI]:
    """A started fake API server (fresh state per test; starts in well under a second)."""
    api = FakeKubeAPI()
    api.start()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kubeconfig(kubeapi: FakeKubeAPI, tmp_path: Path) -> str:
    """Path to an admin kubeconfig for ``kubeapi``."""
    return kubeapi.write_kubeconfig(tmp_path / "kubeconfig")
