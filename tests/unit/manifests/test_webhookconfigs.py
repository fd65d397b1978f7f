"""The two WebhookConfigurations: every field that decides which pods are seen and what a failure does."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.manifests.render import MUTATING, NAMESPACE, SERVICE, VALIDATING, Rendered

NAMESPACE_SELECTOR = {
    "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAMESPACE, "kube-system"]},
        {"key": "pulltag.dev/ignore", "operator": "NotIn", "values": ["true"]},
    ]
}
OBJECT_SELECTOR = {
    "matchExpressions": [{"key": "pulltag.dev/ignore", "operator": "NotIn", "values": ["true"]}]
}
POD_CREATE = {
    "operations": ["CREATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
    "scope": "Namespaced",
}
# kubectl debug: ephemeral containers are added by an UPDATE of this subresource, which a rule for "pods"
# does not match. Validating only: the subresource drops the mutating webhook's annotation patch.
EPHEMERAL_CONTAINERS_UPDATE = {
    "operations": ["UPDATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods/ephemeralcontainers"],
    "scope": "Namespaced",
}
COMMON: dict[str, Any] = {
    "admissionReviewVersions": ["v1"],
    "sideEffects": "NoneOnDryRun",
    "failurePolicy": "Ignore",
    "timeoutSeconds": 5,
    "matchPolicy": "Equivalent",
    "namespaceSelector": NAMESPACE_SELECTOR,
    "objectSelector": OBJECT_SELECTOR,
}
CASES = [
    (
        "MutatingWebhookConfiguration",
        MUTATING,
        "/mutate",
        {"rules": [POD_CREATE], "reinvocationPolicy": "IfNeeded"},
    ),
    (
        "ValidatingWebhookConfiguration",
        VALIDATING,
        "/validate",
        {"rules": [POD_CREATE, EPHEMERAL_CONTAINERS_UPDATE]},
    ),
]


@pytest.mark.parametrize(("kind", "name", "path", "extra"), CASES)
def test_webhook_configuration(
    rendered: Rendered, kind: str, name: str, path: str, extra: dict[str, Any]
) -> None:
    (webhook,) = rendered.get(kind, name)["webhooks"]
    client = dict(webhook["clientConfig"])
    client.pop("caBundle", None)  # checked in test_render, per certificate source
    expected = {
        "name": name,
        "clientConfig": {"service": {"name": SERVICE, "namespace": NAMESPACE, "path": path, "port": 443}},
        **COMMON,
        **extra,
    }
    assert {**webhook, "clientConfig": client} == expected


def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for expr in selector["matchExpressions"]:
        assert expr["operator"] == "NotIn"
        if labels.get(expr["key"]) in expr["values"]:
            return False
    return True


@pytest.mark.parametrize(
    ("labels", "seen"),
    [
        ({"kubernetes.io/metadata.name": "prod"}, True),
        ({"kubernetes.io/metadata.name": "prod", "pulltag.dev/ignore": "false"}, True),
        ({"kubernetes.io/metadata.name": "prod", "pulltag.dev/ignore": "true"}, False),
        ({"kubernetes.io/metadata.name": NAMESPACE}, False),
        ({"kubernetes.io/metadata.name": "kube-system"}, False),
    ],
)
def test_namespace_exemptions(labels: dict[str, str], seen: bool) -> None:
    assert _labels_match(NAMESPACE_SELECTOR, labels) is seen


def test_service_port_matches(rendered: Rendered) -> None:
    service = rendered.get("Service", SERVICE)
    assert [p["port"] for p in service["spec"]["ports"]] == [443]


def test_cert_manager_injection(rendered_all: dict[str, Rendered]) -> None:
    for variant in ("cert-manager", "chart-cert-manager"):
        rendered = rendered_all[variant]
        certificate = rendered.get("Certificate", "pulltag-webhook")
        source = f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
        for kind, name, _, _ in CASES:
            annotations = rendered.get(kind, name)["metadata"]["annotations"]
            assert annotations == {"cert-manager.io/inject-ca-from": source}
    for other in ("default", "base", "single-pod", "app", "chart", "chart-single-pod"):
        for kind, name, _, _ in CASES:
            assert "annotations" not in rendered_all[other].get(kind, name)["metadata"]


@pytest.mark.parametrize("variant", ["cert-manager", "chart-cert-manager"])
def test_cert_manager_chain(rendered_all: dict[str, Rendered], variant: str) -> None:
    rendered = rendered_all[variant]
    selfsigned = rendered.get("Issuer", "pulltag-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca = rendered.get("Certificate", "pulltag-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "Issuer",
        "name": "pulltag-selfsigned",
    }
    ca_issuer = rendered.get("Issuer", "pulltag-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    serving = rendered.get("Certificate", "pulltag-webhook")["spec"]
    assert serving["secretName"] == "pulltag-webhook-tls"
    assert serving["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "pulltag-ca"}
    assert f"{SERVICE}.{NAMESPACE}.svc" in serving["dnsNames"]
    assert "server auth" in serving["usages"]
    assert serving.get("isCA", False) is False
    for obj in rendered.kinds("Issuer") + rendered.kinds("Certificate"):
        assert obj["apiVersion"] == "cert-manager.io/v1"
