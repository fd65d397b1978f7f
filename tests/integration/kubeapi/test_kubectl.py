"""kubectl (a Go client) reads lists and watches from the fake."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.harness.kubeapi import FakeKubeAPI

from ._util import event, pod

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def kubectl(kubeconfig: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL or "kubectl", "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_kubectl_get_raw_list(kubeapi: FakeKubeAPI, kubeconfig: str):
    kubeapi.create("namespaces", {"metadata": {"name": "x"}})
    kubeapi.create("pods", pod("a", "x"))
    out = kubectl(kubeconfig, "get", "--raw", "/api/v1/namespaces/x/pods")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["kind"] == "PodList" and [i["metadata"]["name"] for i in body["items"]] == ["a"]


def test_kubectl_get_raw_watch(kubeapi: FakeKubeAPI, kubeconfig: str):
    kubeapi.create("events", event("e1"))
    out = kubectl(kubeconfig, "get", "--raw", "/api/v1/events?watch=true&timeoutSeconds=1")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [(ev["type"], ev["object"]["metadata"]["name"]) for ev in lines] == [("ADDED", "e1")]


def test_kubectl_get_pods_and_errors(kubeapi: FakeKubeAPI, kubeconfig: str, tmp_path):
    kubeapi.create("pods", pod("web"))
    out = kubectl(kubeconfig, "get", "pods", "-o", "name")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pod/web"]
    out = kubectl(kubeconfig, "get", "pod", "nope")
    assert out.returncode != 0 and 'pods "nope" not found' in out.stderr
    denied = kubeapi.write_kubeconfig(
        tmp_path / "sa", token=kubeapi.add_service_account_token("default", "x")
    )
    out = kubectl(denied, "get", "--raw", "/api/v1/namespaces/default/pods")
    assert out.returncode != 0 and "Forbidden" in out.stderr
