"""Any namespace: with `helm template --namespace platform-tools` and with the kustomize namespace set to
platform-tools, every reference follows (Service DNS names, certificate names, the webhooks' clientConfig
and own-namespace exemption, cert-manager's CA injection, RBAC subjects): no `pulltag-system` is left."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.unit.manifests.render import (
    CHART_VARIANTS,
    SCRIPT_CERT_VARIANTS,
    VARIANTS,
    Obj,
    copy_manifests,
    env_of,
    helm_template,
    kubectl,
    kustomize,
    pod_spec,
    write_generated,
)

OTHER = "platform-tools"
# The kustomizations one applies (base/app is a building block, base is what `manifests/` wraps).
APPLIED = ("default", "single-pod", "cert-manager", "script", "monitoring")


def _set_namespace(kustomization: Path, namespace: str) -> None:
    """What `kustomize edit set namespace` does to the file."""
    text = kustomization.read_text(encoding="utf-8")
    new, count = re.subn(r"(?m)^namespace: .*$", f"namespace: {namespace}", text)
    assert count == 1, kustomization
    kustomization.write_text(new, encoding="utf-8")


@pytest.fixture(scope="module")
def kustomized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    assert kubectl() is not None, "kubectl is needed to render manifests/"
    root = copy_manifests(tmp_path_factory.mktemp("other-namespace"))
    write_generated(root / "base" / "generated", namespace=OTHER)
    out = {}
    for name in APPLIED:
        _set_namespace(root / VARIANTS[name] / "kustomization.yaml", OTHER)
        out[name] = kustomize(root / VARIANTS[name])
    return out


def _no_default_namespace_left(objects: list[Obj]) -> None:
    text = yaml.safe_dump_all(objects)
    assert "pulltag-system" not in text
    for obj in objects:
        if (
            obj["kind"] == "Secret"
            and obj.get("type") == "kubernetes.io/tls"
            and "tls.crt" in obj.get("data", {})
        ):
            cert = x509.load_pem_x509_certificate(base64.b64decode(obj["data"]["tls.crt"]))
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert f"pulltag-webhook.{OTHER}.svc" in names.get_values_for_type(x509.DNSName)


def _references_follow(objects: list[Obj]) -> None:
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert ("Namespace", OTHER) in by_key
    for obj in objects:
        if obj["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            (webhook,) = obj["webhooks"]
            assert webhook["clientConfig"]["service"]["namespace"] == OTHER
            (own, *_) = webhook["namespaceSelector"]["matchExpressions"]
            assert own["key"] == "kubernetes.io/metadata.name" and own["values"][0] == OTHER
            annotations = obj["metadata"].get("annotations") or {}
            if "cert-manager.io/inject-ca-from" in annotations:
                assert annotations["cert-manager.io/inject-ca-from"] == f"{OTHER}/pulltag-webhook"
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert {s["namespace"] for s in obj["subjects"]} == {OTHER}
        if obj["kind"] == "Certificate" and obj["metadata"]["name"] == "pulltag-webhook":
            assert obj["spec"]["commonName"] == f"pulltag-webhook.{OTHER}.svc"
            assert f"pulltag-webhook.{OTHER}.svc.cluster.local" in obj["spec"]["dnsNames"]
        if obj["kind"] == "Deployment":
            for c in pod_spec(obj)["containers"]:
                url = env_of(c).get("PULLTAG_STORE_URL", {}).get("value", "")
                if url.startswith("redis://"):
                    # the kubelet fills in the pod's own namespace
                    assert "pulltag-redis.$(POD_NAMESPACE).svc" in url
                    assert (
                        env_of(c)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
                        == "metadata.namespace"
                    )


@pytest.mark.parametrize("variant", APPLIED)
def test_kustomize_namespace_override(kustomized: dict[str, list[Obj]], variant: str) -> None:
    objects = kustomized[variant]
    _no_default_namespace_left(objects)
    _references_follow(objects)
    if variant in SCRIPT_CERT_VARIANTS:
        assert any(o["kind"] == "Secret" and o["metadata"]["name"] == "pulltag-webhook-tls" for o in objects)


@pytest.mark.parametrize("variant", list(CHART_VARIANTS))
def test_helm_namespace(variant: str) -> None:
    values, _ = CHART_VARIANTS[variant]
    objects = helm_template(values, namespace=OTHER)
    _no_default_namespace_left(objects)
    _references_follow(objects)
    for obj in objects:
        if obj["kind"] not in (
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ):
            assert obj["metadata"]["namespace"] == OTHER, (obj["kind"], obj["metadata"]["name"])


def test_the_check_fails_on_a_forgotten_reference() -> None:
    """The text check would catch a reference kustomize does not rewrite."""
    with pytest.raises(AssertionError):
        _no_default_namespace_left([{"kind": "ConfigMap", "data": {"url": "redis://x.pulltag-system.svc"}}])
