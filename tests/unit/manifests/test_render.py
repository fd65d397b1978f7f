"""Every kustomization renders, yields exactly the expected objects, and each object is valid against
the Kubernetes OpenAPI schemas of 1.30 and 1.34."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.manifests.render import (
    CHART_VARIANTS,
    MANIFESTS,
    MUTATING,
    NAMESPACE,
    ROOT,
    SCRIPT_CERT_VARIANTS,
    VALIDATING,
    VARIANTS,
    Rendered,
    copy_manifests,
    kubectl,
    kustomize,
)

COMMON = {
    ("Namespace", "pulltag-system"),
    ("ServiceAccount", "pulltag-listener"),
    ("ClusterRole", "pulltag-listener"),
    ("ClusterRoleBinding", "pulltag-listener"),
    ("ConfigMap", "pulltag-config"),
    ("Service", "pulltag-webhook"),
    ("Service", "pulltag-listener-metrics"),
    ("NetworkPolicy", "pulltag-default-deny-ingress"),
    ("MutatingWebhookConfiguration", MUTATING),
    ("ValidatingWebhookConfiguration", VALIDATING),
}
REPLICATED = {
    ("ServiceAccount", "pulltag-webhook"),
    ("Role", "pulltag-listener-leader-election"),
    ("RoleBinding", "pulltag-listener-leader-election"),
    ("Deployment", "pulltag-webhook"),
    ("Deployment", "pulltag-listener"),
    ("Deployment", "pulltag-redis"),
    ("Service", "pulltag-redis"),
    ("PersistentVolumeClaim", "pulltag-redis-data"),
    ("PodDisruptionBudget", "pulltag-webhook"),
    ("PodDisruptionBudget", "pulltag-listener"),
    ("NetworkPolicy", "pulltag-webhook"),
    ("NetworkPolicy", "pulltag-listener"),
    ("NetworkPolicy", "pulltag-redis"),
}
SCRIPT_TLS = {("Secret", "pulltag-webhook-tls")}
CERT_MANAGER = {
    ("Issuer", "pulltag-selfsigned"),
    ("Certificate", "pulltag-ca"),
    ("Issuer", "pulltag-ca"),
    ("Certificate", "pulltag-webhook"),
}
SINGLE_POD = {
    ("Deployment", "pulltag"),
    ("PersistentVolumeClaim", "pulltag-data"),
    ("NetworkPolicy", "pulltag"),
}
# Self-managed certificates: no Secret rendered (the listener makes it), its permissions instead.
SELF_MANAGED = {
    ("Role", "pulltag-listener-certificates"),
    ("RoleBinding", "pulltag-listener-certificates"),
    ("ClusterRole", "pulltag-listener-webhook-cabundle"),
    ("ClusterRoleBinding", "pulltag-listener-webhook-cabundle"),
}
MONITORING = {
    ("ServiceMonitor", "pulltag-webhook"),
    ("ServiceMonitor", "pulltag-listener"),
    ("PrometheusRule", "pulltag"),
    ("ConfigMap", "pulltag-dashboard"),
}
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "app": COMMON | REPLICATED,
    "base": COMMON | REPLICATED | SCRIPT_TLS,
    "default": COMMON | REPLICATED | SELF_MANAGED,
    "script": COMMON | REPLICATED | SCRIPT_TLS,
    "cert-manager": COMMON | REPLICATED | CERT_MANAGER,
    "single-pod": COMMON | SINGLE_POD | SELF_MANAGED,
    # The chart makes the store's password (kustomize: created by you) and, in certificates.mode chart,
    # the webhook's certificate.
    "chart": COMMON | REPLICATED | SELF_MANAGED | {("Secret", "pulltag-store-password")},
    "chart-single-pod": COMMON | SINGLE_POD | SELF_MANAGED,
    "chart-cert-manager": COMMON | REPLICATED | CERT_MANAGER | {("Secret", "pulltag-store-password")},
    "chart-script": COMMON | REPLICATED | SCRIPT_TLS | {("Secret", "pulltag-store-password")},
    "monitoring": COMMON | REPLICATED | SELF_MANAGED | MONITORING,
    "chart-monitoring": COMMON
    | REPLICATED
    | SELF_MANAGED
    | MONITORING
    | {("Secret", "pulltag-store-password")},
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
# Custom resources the Kubernetes schemas do not describe: checked by the tests of the overlay instead.
NOT_IN_KUBERNETES_SCHEMAS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# Every Kubernetes version the chart supports (Chart.yaml kubeVersion >=1.27); kubernetes-validate
# ships schemas up to 1.37.
SCHEMA_VERSIONS = tuple(f"1.{minor}" for minor in range(27, 36))


def test_every_kustomization_is_covered() -> None:
    found = set()
    for path in MANIFESTS.rglob("kustomization.yaml"):
        doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc.get("kind") == "Component":
            continue
        found.add(path.parent.relative_to(MANIFESTS).as_posix())
    assert found == set(VARIANTS.values())
    assert set(EXPECTED) == set(VARIANTS) | set(CHART_VARIANTS)


def test_objects_are_exactly_the_expected_ones(rendered: Rendered) -> None:
    assert set(rendered.by_key) == EXPECTED[rendered.name]


def test_namespaces(rendered: Rendered) -> None:
    for obj in rendered.objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert ns is None, obj["metadata"]["name"]
        else:
            assert ns == NAMESPACE, (obj["kind"], obj["metadata"]["name"])


def test_part_of_label_everywhere(rendered: Rendered) -> None:
    for obj in rendered.objects:
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/part-of") == "pulltag", (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] == "Deployment":
            template_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert template_labels.get("app.kubernetes.io/part-of") == "pulltag"
            # Not in the (immutable) selector: a label change must never need a Deployment re-creation.
            assert "app.kubernetes.io/part-of" not in obj["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_valid_against_kubernetes_schemas(rendered: Rendered, version: str) -> None:
    kv: Any = pytest.importorskip("kubernetes_validate")
    checked, skipped = 0, 0
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in NOT_IN_KUBERNETES_SCHEMAS:
            skipped += 1
            continue
        # A kind without a schema raises SchemaNotFoundError: only the allowlist above may be skipped.
        try:
            used = kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")
        assert used == version  # a schema of exactly that version, not an older fallback
        checked += 1
    assert checked + skipped == len(rendered.objects)
    assert skipped == (4 if rendered.cert_manager else 3 if rendered.name.endswith("monitoring") else 0)


def test_strict_schema_rejects_an_unknown_field() -> None:
    kv: Any = pytest.importorskip("kubernetes_validate")
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.34", strict=True)


def test_base_needs_the_generated_files(manifests_without_generated: Path) -> None:
    exe = kubectl()
    assert exe is not None
    proc = subprocess.run(
        [exe, "kustomize", str(manifests_without_generated / "base")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "generated" in proc.stderr


def test_generated_folder_is_git_ignored() -> None:
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/manifests/base/generated/" in lines


@pytest.mark.parametrize("variant", SCRIPT_CERT_VARIANTS)
def test_script_certificate_reaches_secret_and_cabundles(
    rendered_all: dict[str, Rendered], variant: str
) -> None:
    rendered = rendered_all[variant]
    assert rendered.ca_pem is not None
    secret = rendered.get("Secret", "pulltag-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    # ca.crt: the webhook reports its CA's expiry from it; the ServiceMonitor checks the webhook against it
    assert base64.b64decode(secret["data"]["ca.crt"]) == rendered.ca_pem
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in base64.b64decode(secret["data"]["tls.key"])
    expected = base64.b64encode(rendered.ca_pem).decode("ascii")
    for kind, name in (
        ("MutatingWebhookConfiguration", MUTATING),
        ("ValidatingWebhookConfiguration", VALIDATING),
    ):
        (webhook,) = rendered.get(kind, name)["webhooks"]
        assert webhook["clientConfig"]["caBundle"] == expected
        # The patch adds the bundle and nothing else.
        assert set(webhook["clientConfig"]) == {"caBundle", "service"}


@pytest.mark.parametrize(
    "variant", ["app", "cert-manager", "default", "single-pod", "chart", "chart-single-pod"]
)
def test_no_script_certificate_without_generated(rendered_all: dict[str, Rendered], variant: str) -> None:
    rendered = rendered_all[variant]
    assert ("Secret", "pulltag-webhook-tls") not in rendered.by_key
    configurations = rendered.kinds("MutatingWebhookConfiguration")
    configurations += rendered.kinds("ValidatingWebhookConfiguration")
    for obj in configurations:
        for webhook in obj["webhooks"]:
            assert "caBundle" not in webhook["clientConfig"]


def test_documented_install_renders(tmp_path: Path) -> None:
    """`certs/generate.sh && kubectl apply -k manifests/overlays/script`, rendered on a copy."""
    exe, script = kubectl(), ROOT / "certs" / "generate.sh"
    if exe is None:
        pytest.skip("kubectl is not installed")
    if not script.is_file():
        pytest.skip("certs/generate.sh is not there yet")
    root = copy_manifests(tmp_path)
    proc = subprocess.run(
        ["bash", str(script), "--out", str(root / "base" / "generated")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    objects = kustomize(root / "overlays" / "script")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert kinds == EXPECTED["script"]
