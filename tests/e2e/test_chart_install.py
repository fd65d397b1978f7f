"""Install from the chart's rendered output (`helm template --namespace platform-tools`) into the fake API
server: its RBAC, Namespace and WebhookConfigurations (with the chart-made caBundle) are loaded, the webhook
runs with the chart's ConfigMap, certificate and store password against a real password-protected Redis,
and a pod created through the admission chain is annotated and recorded. Then uninstall as Helm does (every
object but those annotated helm.sh/resource-policy: keep): no WebhookConfiguration is left, pods are created
unhindered, and the ledger's volume, its password and the recorded data are still there."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from pulltag.store import open_store
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.redis import RedisServer
from tests.harness.webhook import WebhookServer
from tests.harness.world import LOADED_KINDS, https_status
from tests.unit.manifests.render import helm_template

pytestmark = pytest.mark.timeout(300)

NAMESPACE = "platform-tools"
SERVICE_HOST = f"pulltag-webhook.{NAMESPACE}.svc"
KEEP = "helm.sh/resource-policy"


class ChartWebhook(WebhookServer):
    """The webhook with the chart's certificate: valid for the Service's names in NAMESPACE only."""

    def healthy(self) -> bool:
        try:
            return https_status(self.port, "/healthz", self.ca_file, server_hostname=SERVICE_HOST) == 200
        except OSError:
            return False


def _secret(objects: list[dict[str, Any]], name: str) -> dict[str, bytes]:
    (secret,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name]
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("chart-install")
    objects = helm_template({"createNamespace": True, "certificates": {"mode": "chart"}}, namespace=NAMESPACE)
    tls = _secret(objects, "pulltag-webhook-tls")
    certs = workdir / "certs"
    certs.mkdir()
    for key in ("tls.crt", "tls.key", "ca.crt"):
        (certs / key).write_bytes(tls[key])
    password = _secret(objects, "pulltag-store-password")["password"].decode()
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]

    redis = RedisServer(workdir / "redis", password=password).start()
    api = FakeKubeAPI().start()
    webhook: ChartWebhook | None = None
    try:
        api.load_manifests([o for o in objects if o["kind"] in LOADED_KINDS])
        api.create("namespaces", {"metadata": {"name": "shop"}})
        # The store URL the Deployment builds from $(STORE_PASSWORD) and $(POD_NAMESPACE), pointed at
        # the local server the way the Service would route it.
        store_url = f"redis://:{password}@127.0.0.1:{redis.port}/0"
        webhook = ChartWebhook(
            workdir / "webhook",
            store_url,
            certs=certs,
            config=yaml.safe_load(config_map["data"]["config.yaml"]),
        )
        webhook.start()
        api.route_service(NAMESPACE, "pulltag-webhook", 443, target_port=webhook.port)
        yield {"api": api, "objects": objects, "store_url": store_url, "webhook": webhook}
    finally:
        if webhook is not None:
            webhook.process.stop() if webhook.process else None
        api.close()
        redis.stop()


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:1.0"}]},
    }


def _annotation(pod: dict[str, Any]) -> Any:
    raw = (pod["metadata"].get("annotations") or {}).get("pulltag.dev/images")
    return json.loads(raw) if raw else None


def _delete(api: FakeKubeAPI, obj: dict[str, Any]) -> None:
    """Delete one release object from the fake API server (it keeps webhook configurations and RBAC in
    its admission chain and authorizer; the other kinds a real cluster would run are not served)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    namespace = obj["metadata"].get("namespace") or "default"
    if kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        api.admission.remove(kind, name)
    elif kind == "ClusterRole":
        api.rbac.cluster_roles.pop(name)
    elif kind == "ClusterRoleBinding":
        api.rbac.cluster_role_bindings.pop(name)
    elif kind == "Role":
        api.rbac.roles.pop((namespace, name))
    elif kind == "RoleBinding":
        api.rbac.role_bindings.pop((namespace, name))


def test_installed_chart_annotates_and_records_pods(installed: dict[str, Any]) -> None:
    api: FakeKubeAPI = installed["api"]
    assert api.get("namespaces", NAMESPACE)["metadata"]["labels"]["pulltag.dev/ignore"] == "true"
    pod = api.create("pods", _pod("web-1"), "shop", admit=True)
    assert _annotation(pod) is not None
    store = open_store(installed["store_url"])
    try:
        record = store.get_admission(pod["metadata"]["uid"])
    finally:
        store.close()
    assert record is not None and record.images["containers"] == {"web": "registry.example.com/shop/web:1.0"}
    # The release namespace itself is exempt (the chart's own-namespace exemption).
    own = api.create(
        "pods", {**_pod("own"), "metadata": {"name": "own", "namespace": NAMESPACE}}, NAMESPACE, admit=True
    )
    assert _annotation(own) is None


def test_uninstall_leaves_no_webhook_and_keeps_the_ledger(installed: dict[str, Any]) -> None:
    api: FakeKubeAPI = installed["api"]
    objects: list[dict[str, Any]] = installed["objects"]
    api.create("pods", _pod("web-before"), "shop", admit=True)
    kept = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if (o["metadata"].get("annotations") or {}).get(KEEP) == "keep"
    }
    assert kept == {
        ("Namespace", NAMESPACE),
        ("PersistentVolumeClaim", "pulltag-redis-data"),
        ("Secret", "pulltag-store-password"),
    }
    # helm uninstall: every release object but the kept ones (the Deployments go: the webhook stops).
    installed["webhook"].process.stop()
    for obj in objects:
        if (obj["kind"], obj["metadata"]["name"]) not in kept:
            _delete(api, obj)

    assert api.admission.mutating == {} and api.admission.validating == {}
    assert api.rbac.cluster_roles == {} and api.rbac.cluster_role_bindings == {}
    pod = api.create("pods", _pod("web-after"), "shop", admit=True)
    assert pod["metadata"]["name"] == "web-after" and _annotation(pod) is None
    assert api.try_get("namespaces", NAMESPACE) is not None  # with the ledger's volume in it
    store = open_store(installed["store_url"])
    try:
        names = {r.name for r in store.list_admissions(limit=100)}
    finally:
        store.close()
    assert "web-before" in names
