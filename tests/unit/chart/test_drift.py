"""One source of truth: the chart and manifests/ render the same objects for the same settings, so a change
to one without the other fails here (compare with tests/unit/chart/normalize.py for what may differ)."""

from __future__ import annotations

import difflib

import pytest
import yaml

from tests.unit.chart.normalize import GENERATED, comparable, normalize
from tests.unit.manifests.render import CHART_VARIANTS, Rendered


@pytest.mark.parametrize("chart_variant", list(CHART_VARIANTS))
def test_chart_renders_what_kustomize_renders(rendered_all: dict[str, Rendered], chart_variant: str) -> None:
    _, kustomize_variant = CHART_VARIANTS[chart_variant]
    chart = comparable(rendered_all[chart_variant].objects)
    manifests = comparable(rendered_all[kustomize_variant].objects)
    assert sorted(chart) == sorted(manifests)
    for key, expected in manifests.items():
        if chart[key] != expected:
            diff = difflib.unified_diff(
                yaml.safe_dump(expected, sort_keys=True).splitlines(),
                yaml.safe_dump(chart[key], sort_keys=True).splitlines(),
                f"kustomize {kustomize_variant}",
                f"chart {chart_variant}",
                lineterm="",
            )
            pytest.fail(f"{key} differs:\n" + "\n".join(diff))


def test_normalization_keeps_what_matters() -> None:
    """The comparison would miss nothing but the documented Helm bookkeeping."""
    obj = {
        "kind": "Deployment",
        "metadata": {
            "name": "x",
            "labels": {"helm.sh/chart": "pulltag-0.1.0", "app.kubernetes.io/component": "webhook"},
            "annotations": {"helm.sh/resource-policy": "keep", "other": "1"},
        },
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app.kubernetes.io/instance": "r"}}}},
    }
    assert normalize(obj) == {
        "kind": "Deployment",
        "metadata": {
            "name": "x",
            "labels": {"app.kubernetes.io/component": "webhook"},
            "annotations": {"other": "1"},
        },
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {}}}},
    }
    changed = {**obj, "spec": {**obj["spec"], "replicas": 3}}
    assert normalize(changed) != normalize(obj)
    assert ("Secret", "pulltag-registry-credentials") not in GENERATED
