"""The alert rules: valid for Prometheus 2.42 (`promtool check rules`), their unit tests pass (`promtool test
rules observability/alerts_test.yaml`), every alert has a test where it fires and one where it stays quiet,
and the PrometheusRule of manifests/components/monitoring holds exactly the same rules."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from observability import generate
from tests.harness.procs import require_binary

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "observability" / "alerts.yaml"
ALERT_TESTS = ROOT / "observability" / "alerts_test.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = require_binary("promtool", "prometheus")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def _alert_names() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_rules_are_valid() -> None:
    proc = _promtool("check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alert_names())} rules found" in proc.stdout


def test_alert_unit_tests_pass() -> None:
    proc = _promtool("test", "rules", str(ALERT_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests: list[dict[str, Any]] = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    cases: dict[str, set[str]] = defaultdict(set)
    for test in tests:
        for case in test.get("alert_rule_test", []):
            cases[case["alertname"]].add("fires" if case.get("exp_alerts") else "quiet")
    names = _alert_names()
    assert len(names) >= 10
    missing = {name: {"fires", "quiet"} - cases[name] for name in names if cases[name] != {"fires", "quiet"}}
    assert not missing, f"alerts without a firing or a quiet test: {missing}"
    assert set(cases) <= set(names), f"tests of alerts that do not exist: {set(cases) - set(names)}"


def test_prometheus_rule_holds_the_same_rules() -> None:
    assert generate.stale_files() == [], "run: python observability/generate.py"
    plain = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rule = yaml.safe_load(generate.PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == plain["groups"]


def test_the_issue_13_alert_uses_the_contract_name() -> None:
    # pulltag_retention_passes_total{outcome} (issue 13, listener/releaser.py): a pass that ran is `ran`
    # (`dry_run` in a dry run); every other outcome names why the pass released nothing (no_inventory,
    # stale_inventory, inventory_error, store_error, registry_error, busy, stopped).
    text = ALERTS.read_text(encoding="utf-8")
    assert 'pulltag_retention_passes_total{outcome!~"ran|dry_run"}' in text
    assert 'pulltag_retention_passes_total{outcome=~"ran|dry_run"}' in text
