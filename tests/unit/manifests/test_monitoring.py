"""The optional monitoring components (manifests/components/monitoring and monitoring-dashboard), rendered
by kustomize on top of the default install and of the single-pod overlay: the ServiceMonitors select the
Services serving /metrics on ports that exist, the webhook's is checked against the CA in its TLS Secret,
the PrometheusRule and the dashboard ConfigMap carry exactly the files of observability/."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.unit.manifests.render import ROOT, Obj, Rendered, kustomize, pod_labels, selector_matches

ALERTS = ROOT / "observability" / "alerts.yaml"
DASHBOARD = ROOT / "observability" / "dashboard.json"


def with_components(manifests: Path, base: str, name: str) -> Rendered:
    overlay = manifests / "overlays" / f"monitoring-{name}"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"../../{base}"],
                "components": ["../../components/monitoring", "../../components/monitoring-dashboard"],
            }
        )
    )
    return Rendered(name, kustomize(overlay))


@pytest.fixture(scope="module", params=[("default", "base"), ("single-pod", "overlays/single-pod")])
def rendered(request: pytest.FixtureRequest, manifests_copy: tuple[Path, bytes]) -> Rendered:
    root, _ = manifests_copy
    name, base = request.param
    return with_components(root, base, name)


def test_service_monitors_select_services_with_their_ports(rendered: Rendered) -> None:
    monitors = {m["metadata"]["name"]: m for m in rendered.kinds("ServiceMonitor")}
    assert set(monitors) == {"pulltag-webhook", "pulltag-listener"}
    expected = {
        "pulltag-webhook": ("pulltag-webhook", "https"),
        "pulltag-listener": ("pulltag-listener-metrics", "metrics"),
    }
    for name, monitor in monitors.items():
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s for s in rendered.kinds("Service") if selector_matches(selector, s["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in services] == [expected[name][0]], name
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [expected[name][1]]
        assert expected[name][1] in ports
        assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


def test_webhook_is_scraped_over_tls_checked_against_its_ca(rendered: Rendered) -> None:
    (endpoint,) = rendered.get("ServiceMonitor", "pulltag-webhook")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    tls = endpoint["tlsConfig"]
    assert tls["serverName"] == "pulltag-webhook.pulltag-system.svc"
    assert "insecureSkipVerify" not in tls
    assert tls["ca"]["secret"] == {"name": "pulltag-webhook-tls", "key": "ca.crt"}
    secret = rendered.by_key.get(("Secret", "pulltag-webhook-tls"))
    if secret is None:
        # Self-managed: the listener writes the Secret in the cluster, ca.crt included (every trusted CA:
        # the new and the old one during a CA rotation, both accepted by Prometheus).
        assert rendered.single_pod
        return
    assert base64.b64decode(secret["data"]["ca.crt"]).startswith(b"-----BEGIN CERTIFICATE")


def test_listener_metrics_service_selects_the_listener(rendered: Rendered) -> None:
    service = rendered.get("Service", "pulltag-listener-metrics")
    selector = service["spec"]["selector"]
    (deployment,) = [
        o for o in rendered.kinds("Deployment") if selector_matches(selector, pod_labels(o))
    ]  # fmt: skip
    containers = deployment["spec"]["template"]["spec"]["containers"]
    listener = [c for c in containers if c["name"] == "listener"]
    assert listener, deployment["metadata"]["name"]
    assert {(p["name"], p["containerPort"]) for p in listener[0]["ports"]} >= {("metrics", 9090)}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(9090, "metrics")]


def test_prometheus_rule_is_the_plain_rules_file(rendered: Rendered) -> None:
    rule: Obj = rendered.get("PrometheusRule", "pulltag")
    assert rule["metadata"]["namespace"] == "pulltag-system"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]


def test_dashboard_config_map_for_the_grafana_sidecar(rendered: Rendered) -> None:
    config_map = rendered.get("ConfigMap", "pulltag-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "pulltag-system"
    (content,) = config_map["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text(encoding="utf-8"))
