"""The chart under Helm 3 and Helm 4 (installed by `make tools`; these tests fail, never skip, without
them): lint, template, the values schema, and what each value changes."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
import yaml
from cryptography import x509

from pulltag.config import settings_from_dict
from tests.unit.chart.normalize import GENERATED, comparable
from tests.unit.manifests.render import (
    CHART,
    CHART_VARIANTS,
    HELMS,
    NAMESPACE,
    Obj,
    Rendered,
    env_of,
    helm_run,
    helm_template,
    pod_spec,
)

DIGEST = "sha256:" + "ab" * 32


def _by_key(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _container(objects: list[Obj], deployment: str, name: str) -> Obj:
    (c,) = [
        c for c in pod_spec(_by_key(objects)[("Deployment", deployment)])["containers"] if c["name"] == name
    ]
    return c


@pytest.mark.parametrize("which", list(HELMS))
def test_helm_version(which: str) -> None:
    proc = helm_run(which, "version", "--short")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith({"helm3": "v3.", "helm4": "v4."}[which])


@pytest.mark.parametrize("which", list(HELMS))
@pytest.mark.parametrize("variant", list(CHART_VARIANTS))
def test_lint_strict(which: str, variant: str) -> None:
    values, _ = CHART_VARIANTS[variant]
    proc = helm_run(which, "lint", "--strict", str(CHART), "--values", "-", stdin=yaml.safe_dump(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("variant", list(CHART_VARIANTS))
def test_helm3_and_helm4_render_the_same(variant: str) -> None:
    values, _ = CHART_VARIANTS[variant]
    helm3 = comparable(helm_template(values, which="helm3"))
    helm4 = comparable(helm_template(values, which="helm4"))
    assert helm3 == helm4


@pytest.mark.parametrize("which", list(HELMS))
@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"webhok": {"replicas": 3}}, "webhok"),
        ({"webhook": {"replica": 3}}, "replica"),
        ({"store": {"inCluster": {"persistance": {"size": "2Gi"}}}}, "persistance"),
        ({"config": {"registires": []}}, "registires"),
        ({"mode": "ha"}, "mode"),
        ({"image": {"digest": "sha256:short"}}, "digest"),
    ],
)
def test_a_typo_in_values_fails_the_install(which: str, values: dict[str, Any], named: str) -> None:
    proc = helm_run(which, "template", "pulltag", str(CHART), "--values", "-", stdin=yaml.safe_dump(values))
    assert proc.returncode != 0
    assert named in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"mode": "single-pod", "store": {"url": "redis://r:6379/0"}}, "store.url"),
        ({"store": {"url": "redis://r:6379/0", "existingSecret": "s"}}, "store.existingSecret"),
    ],
)
def test_contradicting_values_fail_the_install(values: dict[str, Any], named: str) -> None:
    proc = helm_run("helm4", "template", "pulltag", str(CHART), "--values", "-", stdin=yaml.safe_dump(values))
    assert proc.returncode != 0
    assert named in proc.stderr, proc.stderr


def test_image_by_digest_and_by_tag() -> None:
    for values, image in (
        ({}, "ghcr.io/pulltag/pulltag:0.1.0"),
        ({"image": {"tag": "0.1.1"}}, "ghcr.io/pulltag/pulltag:0.1.1"),
        (
            {"image": {"repository": "registry.example.com/pulltag", "digest": DIGEST}},
            f"registry.example.com/pulltag@{DIGEST}",
        ),
    ):
        objects = helm_template(values)
        assert _container(objects, "pulltag-webhook", "webhook")["image"] == image
        assert _container(objects, "pulltag-listener", "listener")["image"] == image


def test_external_store_url_means_no_in_chart_store() -> None:
    url = "rediss://:secret@redis.example.com:6380/2"
    for values, expected in (
        ({"store": {"url": url}}, {"name": "PULLTAG_STORE_URL", "value": url}),
        (
            {"store": {"existingSecret": "my-store"}},
            {"name": "PULLTAG_STORE_URL", "valueFrom": {"secretKeyRef": {"name": "my-store", "key": "url"}}},
        ),
    ):
        objects = helm_template(values)
        keys = _by_key(objects)
        for kind, name in (
            ("Deployment", "pulltag-redis"),
            ("Service", "pulltag-redis"),
            ("PersistentVolumeClaim", "pulltag-redis-data"),
            ("Secret", "pulltag-store-password"),
            ("NetworkPolicy", "pulltag-redis"),
        ):
            assert (kind, name) not in keys
        for deployment, container in (("pulltag-webhook", "webhook"), ("pulltag-listener", "listener")):
            env = env_of(_container(objects, deployment, container))
            assert env["PULLTAG_STORE_URL"] == expected
            assert "STORE_PASSWORD" not in env


def test_store_password_generated_or_existing() -> None:
    objects = helm_template({})
    secret = _by_key(objects)[("Secret", "pulltag-store-password")]
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 32 and password.isalnum()
    # kept on uninstall with the ledger it protects; generated once (lookup) and kept on upgrade
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "lookup" in (CHART / "templates" / "store.yaml").read_text(encoding="utf-8")
    other = helm_template({})
    assert _by_key(other)[("Secret", "pulltag-store-password")]["data"] != secret["data"]  # random

    given = helm_template({"store": {"inCluster": {"existingSecret": "vault-store"}}})
    keys = _by_key(given)
    assert ("Secret", "pulltag-store-password") not in keys
    redis = _container(given, "pulltag-redis", "redis")
    assert env_of(redis)["STORE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "vault-store",
        "key": "password",
    }
    listener = _container(given, "pulltag-listener", "listener")
    assert env_of(listener)["STORE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "vault-store"


@pytest.mark.parametrize(
    ("values", "claim"),
    [({}, "pulltag-redis-data"), ({"mode": "single-pod"}, "pulltag-data")],
)
def test_the_ledger_survives_helm_uninstall(values: dict[str, Any], claim: str) -> None:
    pvc = _by_key(helm_template(values))[("PersistentVolumeClaim", claim)]
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    keep = [
        o
        for o in helm_template(values)
        if (o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy")
    ]
    # Nothing else is kept: webhooks, RBAC and workloads go.
    assert {o["kind"] for o in keep} <= {"PersistentVolumeClaim", "Secret"}


def test_chart_made_certificate_serves_the_service_names_of_its_namespace() -> None:
    for namespace in (NAMESPACE, "platform-tools"):
        objects = _by_key(helm_template({"certificates": {"mode": "chart"}}, namespace=namespace))
        secret = objects[("Secret", "pulltag-webhook-tls")]
        assert secret["type"] == "kubernetes.io/tls"
        cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
        ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"pulltag-webhook.{namespace}.svc" in names.get_values_for_type(x509.DNSName)
        cert.verify_directly_issued_by(ca)
        assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
        for kind, name in (
            ("MutatingWebhookConfiguration", "annotate.pulltag.dev"),
            ("ValidatingWebhookConfiguration", "record.pulltag.dev"),
        ):
            (webhook,) = objects[(kind, name)]["webhooks"]
            assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


def test_config_values_become_the_config_file() -> None:
    config = {
        "tagging": {"prefix": "live"},
        "registries": [
            {
                "host": "harbor.example.com",
                "type": "harbor",
                "credentials": "/etc/pulltag/registry/.dockerconfigjson",
            }
        ],
    }
    objects = _by_key(helm_template({"config": config}))
    text = objects[("ConfigMap", "pulltag-config")]["data"]["config.yaml"]
    settings = settings_from_dict(yaml.safe_load(text), env={})
    assert settings.tagging.prefix == "live"
    assert [r.host for r in settings.registries] == ["harbor.example.com"]


def test_scheduling_and_resources_values_reach_the_pods() -> None:
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "webhook"}},
        }
    ]
    values = {
        "webhook": {
            "replicas": 3,
            "topologySpreadConstraints": spread,
            "resources": {
                "requests": {"cpu": "200m", "memory": "256Mi"},
                "limits": {"cpu": "2", "memory": "1Gi"},
            },
            "pdb": {"minAvailable": 2},
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
        "listener": {"tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}]},
    }
    objects = _by_key(helm_template(values))
    webhook = objects[("Deployment", "pulltag-webhook")]
    assert webhook["spec"]["replicas"] == 3
    assert pod_spec(webhook)["topologySpreadConstraints"] == spread
    assert pod_spec(webhook)["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert (
        _container(list(objects.values()), "pulltag-webhook", "webhook")["resources"]["limits"]["memory"]
        == "1Gi"
    )
    assert objects[("PodDisruptionBudget", "pulltag-webhook")]["spec"]["minAvailable"] == 2
    assert pod_spec(objects[("Deployment", "pulltag-listener")])["tolerations"][0]["key"] == "infra"


def test_notes_say_what_to_check_next(tmp_path: Any) -> None:
    """Helm 4 renders NOTES.txt on a client-side dry run; Helm 3 needs a cluster for that (its lint above
    renders NOTES.txt too)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    proc = helm_run(
        "helm4", "install", "pulltag", str(CHART), "--namespace", "platform-tools", "--dry-run=client",
        "--kubeconfig", str(kubeconfig),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n platform-tools exec deploy/pulltag-listener -- pulltag registry check" in notes
    assert "create secret docker-registry pulltag-registry-credentials" in notes
    assert "8443" in notes
    assert "pulltag-system" not in notes


def test_generated_objects_are_the_documented_ones(rendered_all: dict[str, Rendered]) -> None:
    made = {(o["kind"], o["metadata"]["name"]) for o in rendered_all["chart-script"].objects} & GENERATED
    assert made == GENERATED
