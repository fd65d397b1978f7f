"""Fixtures for the simulated kubelet's tests.

The fake API server and registry fixtures are imported (a ``pytest_plugins`` list in a nested conftest
would break ``pytest tests``) unless the project conftest already registers them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tests.conftest as _root
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.kubelet import Kubelet, RegistryResolver
from tests.harness.registry import RegistryServer

if "tests.harness.fixtures_kube" not in getattr(_root, "pytest_plugins", []):
    from tests.harness.fixtures_kube import kubeapi, kubeconfig  # noqa: F401
if "tests.harness.fixtures_registry" not in getattr(_root, "pytest_plugins", []):
    from tests.harness.fixtures_registry import htpasswd_registry, oci_registry, token_registry  # noqa: F401

Obj = dict[str, Any]
KubeletFactory = Callable[..., Kubelet]


@pytest.fixture
def registry(oci_registry: RegistryServer) -> RegistryServer:
    """The anonymous docker-registry (shared by the session: tests use their own repositories)."""
    return oci_registry


@pytest.fixture
def repo(registry: RegistryServer) -> str:
    return registry.new_repository("sim/app")


@pytest.fixture
def make_kubelet(kubeapi: FakeKubeAPI) -> Iterator[KubeletFactory]:
    """Kubelets resolving against real registries by default; all are stopped at teardown."""
    made: list[Kubelet] = []

    def make(**kwargs: Any) -> Kubelet:
        kwargs.setdefault("resolve_digest", RegistryResolver())
        kubelet = Kubelet(kubeapi, **kwargs)
        made.append(kubelet)
        return kubelet

    yield make
    for kubelet in made:
        kubelet.stop()


@pytest.fixture
def namespace(kubeapi: FakeKubeAPI) -> str:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    kubeapi.create("namespaces", {"metadata": {"name": name}})
    return name


def make_pod(
    api: FakeKubeAPI,
    namespace: str,
    name: str,
    containers: dict[str, str],
    *,
    init: dict[str, str] | None = None,
    node: str | None = None,
) -> Obj:
    """Create a pod (container name -> image) in-process, as a client would."""
    spec: Obj = {"containers": [{"name": n, "image": i} for n, i in containers.items()]}
    if init:
        spec["initContainers"] = [{"name": n, "image": i} for n, i in init.items()]
    if node:
        spec["nodeName"] = node
    return api.create("pods", {"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def pod_events(api: FakeKubeAPI, namespace: str, pod: str) -> list[Obj]:
    """The pod's events in the order they were written (first creation)."""
    items = api.list("events", namespace, field_selector=f"involvedObject.name={pod}")
    return sorted(items, key=lambda e: int(e["metadata"]["name"].rsplit(".", 1)[1], 16))


def status_of(pod: Obj, container: str, field: str = "containerStatuses") -> Obj:
    found = [s for s in (pod.get("status") or {}).get(field) or [] if s["name"] == container]
    assert len(found) == 1, (container, pod.get("status"))
    return dict(found[0])
