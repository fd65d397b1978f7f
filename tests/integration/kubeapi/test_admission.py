"""The admission chain calls webhooks like kube-apiserver: TLS to <svc>.<ns>.svc, rules, selectors,
JSONPatch, reinvocation, name/uid only after mutation, validating denials, warnings, dry run."""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.kubeapi import FakeKubeAPI, TestCA
from tests.harness.kubeapi.webhook_server import TestWebhookServer, patch_response

from ._util import Raw, pod

NS, SVC = "pulltag-system", "pulltag-webhook"

CONFIGS = """
apiVersion: v1
kind: Namespace
metadata: {name: pulltag-system}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: pulltag}
webhooks:
  - name: annotate.pulltag.dev
    clientConfig:
      service: {namespace: pulltag-system, name: pulltag-webhook, path: /mutate, port: 443}
    rules:
      - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods], scope: Namespaced}
    namespaceSelector:
      matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [pulltag-system, kube-system]}
        - {key: pulltag.dev/ignore, operator: NotIn, values: ["true"]}
    objectSelector:
      matchExpressions: [{key: pulltag.dev/ignore, operator: NotIn, values: ["true"]}]
    sideEffects: None
    admissionReviewVersions: [v1]
    reinvocationPolicy: IfNeeded
    failurePolicy: Fail
    timeoutSeconds: 5
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: pulltag}
webhooks:
  - name: record.pulltag.dev
    clientConfig:
      service: {namespace: pulltag-system, name: pulltag-webhook, path: /validate}
    rules:
      - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}
    namespaceSelector:
      matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [pulltag-system, kube-system]}
    sideEffects: NoneOnDryRun
    admissionReviewVersions: [v1]
    failurePolicy: Ignore
"""


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("webhook-ca")


class Decider:
    """What the test webhook answers, per path; tests replace entries."""

    def __init__(self) -> None:
        self.by_path: dict[str, Any] = {
            "/mutate": lambda req: patch_response(
                [
                    {
                        "op": "add",
                        "path": "/metadata/annotations",
                        "value": {
                            "pulltag.dev/images": json.dumps(
                                {c["name"]: c["image"] for c in req["object"]["spec"]["containers"]}
                            )
                        },
                    }
                ]
            ),
            "/validate": lambda req: {
                "allowed": True,
                "warnings": ['registry "x" is not "configured"', "image ré…/x will not be tagged"],
            },
        }

    def __call__(self, path: str, req: dict[str, Any]) -> dict[str, Any]:
        return dict(self.by_path[path](req))


@pytest.fixture
def decider() -> Decider:
    return Decider()


@pytest.fixture
def webhook(ca: TestCA, decider: Decider) -> Iterator[TestWebhookServer]:
    server = TestWebhookServer(decider, ca.issue(dns_names=[f"{SVC}.{NS}.svc", "localhost"])).start()
    yield server
    server.stop()


@pytest.fixture
def admitted(kubeapi: FakeKubeAPI, webhook: TestWebhookServer, ca: TestCA) -> FakeKubeAPI:
    kubeapi.load_manifests(CONFIGS)
    kubeapi.set_webhook_ca_bundle(ca.ca_pem)
    kubeapi.route_service(NS, SVC, 443, target_port=webhook.port)
    return kubeapi


def reviews(webhook: TestWebhookServer, path: str) -> list[dict[str, Any]]:
    return [r["request"] for p, r in webhook.requests if p.split("?")[0] == path]


def test_mutation_then_name_then_validation(
    admitted: FakeKubeAPI, webhook: TestWebhookServer, core: client.CoreV1Api
):
    created = core.create_namespaced_pod("default", pod(generate_name="web-", labels={"app": "web"}))
    assert json.loads(created.metadata.annotations["pulltag.dev/images"]) == {"app": "registry.example/app:1"}
    assert created.metadata.name.startswith("web-")

    [m] = reviews(webhook, "/mutate")
    assert m["operation"] == "CREATE" and m["namespace"] == "default" and m.get("name", "") == ""
    assert m["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert m["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert m["requestKind"] == m["kind"] and m["requestResource"] == m["resource"]
    assert m["userInfo"]["username"] == "kubernetes-admin" and "system:masters" in m["userInfo"]["groups"]
    assert m["oldObject"] is None and m["dryRun"] is False
    assert m["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert m["object"]["metadata"]["generateName"] == "web-"
    assert "name" not in m["object"]["metadata"] and "uid" not in m["object"]["metadata"]
    assert m["uid"]

    [v] = reviews(webhook, "/validate")
    assert v["name"] == created.metadata.name
    assert v["object"]["metadata"]["uid"] == created.metadata.uid
    assert "pulltag.dev/images" in v["object"]["metadata"]["annotations"]
    path = next(p for p, _ in webhook.requests if p.startswith("/validate"))
    assert path == "/validate?timeout=10s"


def test_warnings_are_headers(admitted: FakeKubeAPI):
    r = Raw(admitted)("POST", "/api/v1/namespaces/default/pods", pod("a"))
    assert r.status_code == 201
    # header bytes are UTF-8, as kube-apiserver writes them; http.client reads them as Latin-1
    got = [w.encode("latin-1").decode() for w in r.raw.headers.getlist("Warning")]
    assert got == [
        '299 - "registry \\"x\\" is not \\"configured\\""',
        '299 - "image ré…/x will not be tagged"',
    ]


def test_reinvocation_if_needed(
    admitted: FakeKubeAPI, webhook: TestWebhookServer, decider: Decider, ca: TestCA
):
    conf = yaml.safe_load_all(CONFIGS)
    mutating = copy.deepcopy(next(d for d in conf if d["kind"] == "MutatingWebhookConfiguration"))
    later = mutating["webhooks"][0]
    later.update(name="label.test.dev", reinvocationPolicy="Never")
    later["clientConfig"]["service"]["path"] = "/label"
    mutating["metadata"]["name"] = "zz-later"  # configurations run in name order
    admitted.load_manifests([mutating])
    admitted.set_webhook_ca_bundle(ca.ca_pem, "zz-later")
    decider.by_path["/label"] = lambda req: patch_response(
        [{"op": "add", "path": "/metadata/labels", "value": {"seen": "yes"}}]
    )
    created = admitted.create("pods", pod(generate_name="p-"), admit=True)
    assert created["metadata"]["labels"] == {"seen": "yes"}
    calls = [r["webhook"] for r in admitted.admission.calls]
    assert calls == ["annotate.pulltag.dev", "label.test.dev", "annotate.pulltag.dev", "record.pulltag.dev"]
    second = reviews(webhook, "/mutate")[1]
    assert second["object"]["metadata"]["labels"] == {"seen": "yes"}


def test_validating_denial(admitted: FakeKubeAPI, decider: Decider, core: client.CoreV1Api):
    decider.by_path["/validate"] = lambda req: {"allowed": False, "status": {"message": "images not allowed"}}
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod("default", pod("a"))
    body = json.loads(ei.value.body)
    assert ei.value.status == 400
    assert body["message"] == 'admission webhook "record.pulltag.dev" denied the request: images not allowed'
    decider.by_path["/validate"] = lambda req: {
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden"},
    }
    r = Raw(admitted)("POST", "/api/v1/namespaces/default/pods", pod("a"))
    assert r.status_code == 403
    assert r.json()["message"] == 'admission webhook "record.pulltag.dev" denied the request: Forbidden'
    assert admitted.list("pods") == []


def test_selectors_exempt(admitted: FakeKubeAPI, webhook: TestWebhookServer):
    admitted.create("pods", pod("own", NS), admit=True)  # the webhook's own namespace
    admitted.create("pods", pod("opt-out", labels={"pulltag.dev/ignore": "true"}), admit=True)
    admitted.create("namespaces", {"metadata": {"name": "quiet", "labels": {"pulltag.dev/ignore": "true"}}})
    admitted.create("pods", pod("quiet", "quiet"), admit=True)
    assert reviews(webhook, "/mutate") == []
    assert [r["name"] for r in reviews(webhook, "/validate")] == ["opt-out", "quiet"]
    admitted.create("namespaces", {"metadata": {"name": "other"}})  # rules: pods only
    assert len(webhook.requests) == 2


def test_failure_policies_and_tls_verification(admitted: FakeKubeAPI, ca: TestCA, webhook: TestWebhookServer):
    raw = Raw(admitted)
    admitted.set_webhook_ca_bundle(TestCA("someone-else").ca_pem)  # TLS must now fail verification
    r = raw("POST", "/api/v1/namespaces/default/pods", pod("a"))
    assert r.status_code == 500 and r.json()["reason"] == "InternalError"
    assert r.json()["message"].startswith(
        'Internal error occurred: failed calling webhook "annotate.pulltag.dev": failed to call webhook: '
        'Post "https://pulltag-webhook.pulltag-system.svc:443/mutate?timeout=5s"'
    )
    assert "CERTIFICATE_VERIFY_FAILED" in r.json()["message"]
    admitted.admission.mutating["pulltag"]["webhooks"][0]["failurePolicy"] = "Ignore"
    r = raw("POST", "/api/v1/namespaces/default/pods", pod("a"))
    assert r.status_code == 201  # both webhooks failed, both are Ignore
    assert "annotations" not in r.json()["metadata"]
    assert webhook.requests == []


def test_dry_run(admitted: FakeKubeAPI, webhook: TestWebhookServer):
    raw = Raw(admitted)
    r = raw("POST", "/api/v1/namespaces/default/pods?dryRun=All", pod(generate_name="d-"))
    assert r.status_code == 201 and r.json()["metadata"]["name"].startswith("d-")
    assert admitted.list("pods") == []
    assert all(req["request"]["dryRun"] is True for _, req in webhook.requests) and len(webhook.requests) == 2
    admitted.admission.validating["pulltag"]["webhooks"][0]["sideEffects"] = "Unknown"
    r = raw("POST", "/api/v1/namespaces/default/pods?dryRun=All", pod("d"))
    assert r.status_code == 400
    assert r.json()["message"] == 'admission webhook "record.pulltag.dev" does not support dry run'


def test_url_client_config_and_timeout(kubeapi: FakeKubeAPI, ca: TestCA):
    release = threading.Event()

    def decide(path: str, req: dict[str, Any]) -> dict[str, Any]:
        if path == "/slow":
            release.wait(5)
        return {"allowed": True}

    server = TestWebhookServer(decide, ca.issue(dns_names=["localhost"])).start()
    try:
        hooks = []
        for name, path, timeout in (("url.test.dev", "/fast", 5), ("slow.test.dev", "/slow", 1)):
            hooks.append(
                {
                    "name": name,
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": timeout,
                    "clientConfig": {
                        "url": f"https://localhost:{server.port}{path}",
                        "caBundle": base64.b64encode(ca.ca_pem).decode(),
                    },
                    "rules": [
                        {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}
                    ],
                }
            )
        kubeapi.load_manifests(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "t"},
                "webhooks": hooks,
            }
        )
        r = Raw(kubeapi)("POST", "/api/v1/namespaces/default/pods", pod("a"))
        release.set()
        assert r.status_code == 500
        assert 'failed calling webhook "slow.test.dev"' in r.json()["message"]
        assert next(p for p, _ in server.requests) == "/fast?timeout=5s"
    finally:
        release.set()
        server.stop()


def test_connections_to_webhooks_are_kept_alive_and_a_closed_one_is_replaced(
    admitted: FakeKubeAPI, webhook: TestWebhookServer, core: client.CoreV1Api
):
    # kube-apiserver reuses connections to a webhook: one TLS handshake, not one per call.
    for i in range(3):
        core.create_namespaced_pod("default", pod(f"kept-{i}"))
    assert len(webhook.requests) == 6  # mutate + validate for each pod
    assert webhook.connections == 1
    # the webhook closes its idle connections (a restart, an idle timeout): the next call still lands
    webhook.drop_connections()
    created = core.create_namespaced_pod("default", pod("after-close"))
    assert "pulltag.dev/images" in created.metadata.annotations
    assert len(webhook.requests) == 8
    assert webhook.connections == 2
