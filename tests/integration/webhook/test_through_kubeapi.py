"""`pulltag webhook` called by the fake API server with the WebhookConfigurations of manifests/: a pod
CREATE and then `kubectl debug` (an UPDATE of pods/ephemeralcontainers), with the real `kubernetes` client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from pulltag.store import Store
from tests.harness.kubeapi import FakeKubeAPI
from tests.integration.webhook.conftest import StartServer

CONFIGURATIONS = Path(__file__).parents[3] / "manifests" / "base" / "app" / "webhookconfigurations.yaml"
ANNOTATION = "pulltag.dev/images"
APP = "harbor.example.com/shop/web:2.1"
DEBUG = "registry.local:5000/tools/debug:1"


@pytest.fixture
def core(kubeconfig: str) -> Iterator[client.CoreV1Api]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture
def wired(kubeapi: FakeKubeAPI, start_server: StartServer, shared_certs: Path, store_url: str) -> FakeKubeAPI:
    """The fake API server calling a real `pulltag webhook` through the manifests' configurations."""
    server = start_server(store_url, workers=1)
    loaded = kubeapi.load_manifests(CONFIGURATIONS.read_text())
    assert {kind for kind, _, _ in loaded} == {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    kubeapi.set_webhook_ca_bundle((shared_certs / "ca.crt").read_bytes())
    kubeapi.route_service("pulltag-system", "pulltag-webhook", 443, target_port=server.port)
    kubeapi.create("namespaces", {"metadata": {"name": "shop"}})
    return kubeapi


def webhooks_called(api: FakeKubeAPI) -> list[tuple[str, str, str]]:
    """(webhook, operation, subResource) of every review the fake sent."""
    return [
        (c["webhook"], c["review"]["request"]["operation"], c["review"]["request"].get("subResource", ""))
        for c in api.admission.calls
    ]


def test_kubectl_debug_is_recorded_through_the_api_server(
    wired: FakeKubeAPI, core: client.CoreV1Api, store_url: str, store_for: Callable[[str], Store]
) -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": APP}]},
    }
    created = core.create_namespaced_pod("shop", body)
    annotation = created.metadata.annotations[ANNOTATION]
    assert json.loads(annotation) == {"containers": {"app": APP}}
    store = store_for(store_url)
    record = store.get_admission(created.metadata.uid)
    assert record is not None and record.images == {"containers": {"app": APP}}

    patch = {
        "spec": {"ephemeralContainers": [{"name": "debugger", "image": DEBUG, "targetContainerName": "app"}]}
    }
    debugged = core.patch_namespaced_pod_ephemeralcontainers(
        "web", "shop", patch, _content_type="application/strategic-merge-patch+json"
    )
    assert [c.name for c in debugged.spec.ephemeral_containers] == ["debugger"]

    record = store.get_admission(created.metadata.uid)
    assert record is not None
    assert record.images == {"containers": {"app": APP}, "ephemeralContainers": {"debugger": DEBUG}}
    assert (record.namespace, record.name) == ("shop", "web")
    # Only the validating webhook sees the subresource, and the annotation stays as admitted at CREATE:
    # for the ephemeral container the listener depends on the store record.
    assert webhooks_called(wired) == [
        ("annotate.pulltag.dev", "CREATE", ""),
        ("record.pulltag.dev", "CREATE", ""),
        ("record.pulltag.dev", "UPDATE", "ephemeralcontainers"),
    ]
    assert debugged.metadata.annotations == {ANNOTATION: annotation}
