"""The chart's observability pack (values monitoring.*): off by default; on, the same objects as
manifests/overlays/monitoring (test_drift), with the rules and the dashboard of observability/ exactly
(copied into the chart by observability/generate.py, whose --check covers the copies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from observability import generate
from tests.unit.manifests.render import CHART, CHART_VARIANTS, HELMS, ROOT, helm_run, helm_template

ON = CHART_VARIANTS["chart-monitoring"][0]
KINDS = {"ServiceMonitor", "PrometheusRule"}


def _by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_off_by_default() -> None:
    objects = helm_template({})
    assert not [o for o in objects if o["kind"] in KINDS]
    assert ("ConfigMap", "pulltag-dashboard") not in _by_key(objects)


@pytest.mark.parametrize("which", list(HELMS))
def test_rules_and_dashboard_are_observability_files(which: str) -> None:
    objects = _by_key(
        helm_template({**ON, "monitoring": {**ON["monitoring"], "labels": {"release": "prom"}}}, which=which)
    )
    alerts = yaml.safe_load((ROOT / "observability" / "alerts.yaml").read_text(encoding="utf-8"))
    rule = objects[("PrometheusRule", "pulltag")]
    assert rule["spec"]["groups"] == alerts["groups"]
    dashboard = objects[("ConfigMap", "pulltag-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = (ROOT / "observability" / "dashboard.json").read_text(encoding="utf-8")
    assert dashboard["data"]["pulltag.json"] == text
    assert json.loads(dashboard["data"]["pulltag.json"])["panels"]
    for key in (
        ("PrometheusRule", "pulltag"),
        ("ServiceMonitor", "pulltag-webhook"),
        ("ServiceMonitor", "pulltag-listener"),
    ):
        assert objects[key]["metadata"]["labels"]["release"] == "prom"


def test_webhook_is_scraped_with_the_service_name_of_the_release_namespace() -> None:
    objects = _by_key(helm_template(ON, namespace="platform-tools"))
    (endpoint,) = objects[("ServiceMonitor", "pulltag-webhook")]["spec"]["endpoints"]
    assert endpoint["tlsConfig"]["serverName"] == "pulltag-webhook.platform-tools.svc"
    assert endpoint["tlsConfig"]["ca"] == {"secret": {"name": "pulltag-webhook-tls", "key": "ca.crt"}}


@pytest.mark.parametrize("which", list(HELMS))
@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"monitoring": {"serviceMonitor": {"enabled": True}}}, "serviceMonitor"),
        ({"monitoring": {"dashboard": {"enabled": "yes"}}}, "enabled"),
        ({"monitoring": {"serviceMonitors": {"interval": "often"}}}, "interval"),
    ],
)
def test_schema_rejects_bad_monitoring_values(which: str, values: dict[str, Any], named: str) -> None:
    proc = helm_run(which, "template", "pulltag", str(CHART), "--values", "-", stdin=yaml.safe_dump(values))
    assert proc.returncode != 0
    assert named in proc.stderr, proc.stderr


def test_generate_checks_the_chart_copies() -> None:
    files = generate.expected_files()
    assert files[generate.CHART_FILES / "alerts.yaml"] == generate.ALERTS.read_text(encoding="utf-8")
    assert files[generate.CHART_FILES / "dashboard.json"] == generate.DASHBOARD.read_text(encoding="utf-8")
    assert generate.stale_files() == []
