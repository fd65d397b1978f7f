"""Render the kustomizations of manifests/ as `kubectl kustomize` does, on a temporary copy whose
manifests/base/generated/ holds certificates from `pulltag certs` (or, until that command exists, an
equivalent set made here with `cryptography` in the format manifests/README.md documents); and the Helm
chart charts/pulltag with `helm template` (Helm 3 and Helm 4, installed by `make tools`)."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"
CHART = ROOT / "charts" / "pulltag"
NAMESPACE = "pulltag-system"
SERVICE = "pulltag-webhook"
MUTATING = "annotate.pulltag.dev"
VALIDATING = "record.pulltag.dev"

# Every kustomization under manifests/ (kind Kustomization; components are rendered through them).
VARIANTS: dict[str, str] = {
    "default": ".",
    "base": "base",
    "app": "base/app",
    "single-pod": "overlays/single-pod",
    "cert-manager": "overlays/cert-manager",
    "script": "overlays/script",
    "monitoring": "overlays/monitoring",
}
# Variants that carry the certificate of certs/generate.sh (Secret + caBundle from generated/).
SCRIPT_CERT_VARIANTS = ("script", "base")
# Variants whose listener manages the webhook's certificates in the cluster (the default of both).
SELF_MANAGED_VARIANTS = (
    "default",
    "single-pod",
    "monitoring",
    "chart",
    "chart-single-pod",
    "chart-monitoring",
)
# The chart, rendered with these values for the same settings as a kustomization (tests/unit/chart
# compares them object by object): variant name -> (values, the kustomize variant it must equal).
CHART_VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "chart": ({"createNamespace": True}, "default"),
    "chart-single-pod": ({"createNamespace": True, "mode": "single-pod"}, "single-pod"),
    "chart-cert-manager": (
        {"createNamespace": True, "certificates": {"mode": "certManager"}},
        "cert-manager",
    ),
    "chart-script": ({"createNamespace": True, "certificates": {"mode": "chart"}}, "script"),
    "chart-monitoring": (
        {
            "createNamespace": True,
            "monitoring": {
                "serviceMonitors": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            },
        },
        "monitoring",
    ),
}
# The Helm binaries `make tools` installs (PULLTAG_HELM3 / PULLTAG_HELM4 name others).
HELMS: dict[str, str] = {"helm3": "PULLTAG_HELM3", "helm4": "PULLTAG_HELM4"}

Obj = dict[str, Any]


@dataclass
class Rendered:
    name: str
    objects: list[Obj]
    ca_pem: bytes | None = None
    by_key: dict[tuple[str, str], Obj] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for obj in self.objects:
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in self.by_key, f"{self.name}: {key} rendered twice"
            self.by_key[key] = obj

    def get(self, kind: str, name: str) -> Obj:
        try:
            return self.by_key[(kind, name)]
        except KeyError:
            raise AssertionError(f"{self.name}: no {kind} {name}") from None

    def kinds(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    @property
    def single_pod(self) -> bool:
        return self.name.endswith("single-pod")

    @property
    def chart(self) -> bool:
        return self.name.startswith("chart")

    @property
    def self_managed(self) -> bool:
        return self.name in SELF_MANAGED_VARIANTS

    @property
    def cert_manager(self) -> bool:
        return self.name.endswith("cert-manager")


def helm(which: str) -> str:
    """The path of Helm 3 or Helm 4; fails (never skips) when missing: `make tools` installs both."""
    path = Path(os.environ.get(HELMS[which]) or ROOT / ".tools" / which / "helm")
    assert path.is_file() and os.access(path, os.X_OK), f"{which} not found at {path}: run `make tools`"
    return str(path)


def helm_run(which: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # Helm's own cache and config in a temporary place: no repository, no plugin, no user file matters.
    home = Path(os.environ.get("TMPDIR", "/tmp")) / "pulltag-helm"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config")}
    return subprocess.run(
        [helm(which), *args], input=stdin, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def helm_template(
    values: dict[str, Any], namespace: str = NAMESPACE, which: str = "helm4", release: str = "pulltag"
) -> list[Obj]:
    """`helm template` of charts/pulltag with `values` (given as JSON on stdin: JSON is YAML)."""
    proc = helm_run(
        which,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        "-",
        stdin=json.dumps(values),
    )
    assert proc.returncode == 0, f"{which} template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def kubectl() -> str | None:
    """kubectl on PATH, else the one `make tools` unpacked next to Helm 4 (same kustomize behaviour)."""
    bundled = ROOT / ".tools" / "helm4" / "kubectl"
    return shutil.which("kubectl") or (str(bundled) if bundled.is_file() else None)


def kustomize(directory: Path) -> list[Obj]:
    exe = kubectl()
    assert exe is not None
    proc = subprocess.run(
        [exe, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def copy_manifests(dest: Path) -> Path:
    """A copy of manifests/ without any generated/ folder of the working tree."""
    target = dest / "manifests"
    shutil.copytree(MANIFESTS, target, ignore=shutil.ignore_patterns("generated"))
    return target


def write_generated(generated: Path, namespace: str = NAMESPACE) -> bytes:
    """Fill generated/ with `pulltag certs` (or the documented equivalent); return the CA's PEM."""
    generated.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("pulltag.certs") is not None:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pulltag",
                "certs",
                "--out",
                str(generated),
                "--service",
                SERVICE,
                "--namespace",
                namespace,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 0, f"pulltag certs failed:\n{proc.stdout}\n{proc.stderr}"
    else:
        _write_documented_equivalent(generated, namespace)
    for name in ("tls.crt", "tls.key", "ca.crt", "webhook-cabundle-patch.yaml"):
        assert (generated / name).is_file(), f"generated/{name} missing"
    return (generated / "ca.crt").read_bytes()


def cabundle_patch(ca_pem: bytes) -> str:
    """The patch format manifests/README.md documents for generated/webhook-cabundle-patch.yaml."""
    bundle = base64.b64encode(ca_pem).decode("ascii")
    docs = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name},
            "webhooks": [{"name": name, "clientConfig": {"caBundle": bundle}}],
        }
        for kind, name in (
            ("MutatingWebhookConfiguration", MUTATING),
            ("ValidatingWebhookConfiguration", VALIDATING),
        )
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def _write_documented_equivalent(generated: Path, namespace: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pulltag-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    host = f"{SERVICE}.{namespace}.svc"
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)
    (generated / "ca.crt").write_bytes(ca_pem)
    (generated / "tls.crt").write_bytes(cert.public_bytes(pem))
    (generated / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (generated / "webhook-cabundle-patch.yaml").write_text(cabundle_patch(ca_pem), encoding="utf-8")


# --- helpers over rendered objects -------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod")


def pod_spec(obj: Obj) -> Obj:
    if obj["kind"] == "Pod":
        spec: Obj = obj["spec"]
    elif obj["kind"] == "CronJob":
        spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = obj["spec"]["template"]["spec"]
    return spec


def pod_labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"].get("labels", {})
    return labels


def workloads(rendered: Rendered) -> list[Obj]:
    return [o for o in rendered.objects if o["kind"] in WORKLOAD_KINDS]


def all_containers(spec: Obj) -> list[Obj]:
    return [
        *spec.get("initContainers", []),
        *spec.get("containers", []),
        *spec.get("ephemeralContainers", []),
    ]


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def mounts_of(c: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def volumes_of(spec: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in spec.get("volumes", [])}


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (matchLabels AND matchExpressions; {} matches everything)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
