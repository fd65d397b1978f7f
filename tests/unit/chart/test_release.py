"""Release artifacts: LICENSE, CHANGELOG.md, `helm package` with both Helms, and the single-file install
(charts/install-yaml.sh, what `make release` writes to dist/install.yaml) with the image as a parameter."""

from __future__ import annotations

import os
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.manifests.render import CHART, HELMS, ROOT, all_containers, helm_run, kubectl, pod_spec

SCRIPT = ROOT / "charts" / "install-yaml.sh"
DIGEST = "sha256:" + "c" * 64


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def _install_yaml(image: str) -> subprocess.CompletedProcess[str]:
    exe = kubectl()
    assert exe is not None, "kubectl is needed to render manifests/"
    return subprocess.run(
        ["bash", str(SCRIPT), image],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUBECTL": exe},
    )


def test_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["license"] == "Apache-2.0"


def test_changelog_names_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{_version()}]" in text
    assert "## [Unreleased]" in text


@pytest.mark.parametrize("which", list(HELMS))
def test_helm_package(which: str, tmp_path: Path) -> None:
    proc = helm_run(which, "package", str(CHART), "--destination", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    package = tmp_path / f"pulltag-{_version()}.tgz"
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    assert {"pulltag/Chart.yaml", "pulltag/values.schema.json", "pulltag/templates/NOTES.txt"} <= names
    assert "pulltag/files/config.yaml" in names


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            f"registry.example.com:5000/platform/pulltag@{DIGEST}",
            f"registry.example.com:5000/platform/pulltag@{DIGEST}",
        ),
        (
            "registry.example.com/platform/pulltag:0.1.0-rc1",
            "registry.example.com/platform/pulltag:0.1.0-rc1",
        ),
    ],
)
def test_install_yaml_uses_the_given_image(image: str, expected: str) -> None:
    proc = _install_yaml(image)
    assert proc.returncode == 0, proc.stderr
    objects: list[dict[str, Any]] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    images = {
        c["name"]: c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in all_containers(pod_spec(o))
    }
    assert images["webhook"] == expected and images["listener"] == expected
    assert images["redis"].startswith("docker.io/valkey/valkey:")
    # Nothing secret ships: the leading listener makes the certificate, you make the Secrets.
    assert [o for o in objects if o["kind"] == "Secret"] == []
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "MutatingWebhookConfiguration", "PersistentVolumeClaim"} <= kinds
    assert "Certificate" not in kinds
    listener = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pulltag-listener"
    )
    args = [a for c in all_containers(pod_spec(listener)) for a in c.get("args", [])]
    assert "--manage-webhook-certificates" in args
    kv: Any = pytest.importorskip("kubernetes_validate")
    for version in ("1.27", "1.35"):
        for obj in objects:
            if obj["apiVersion"] != "cert-manager.io/v1":
                kv.validate(obj, version, strict=True)


@pytest.mark.parametrize("image", ["registry.example.com/pulltag", "registry.example.com/pulltag@sha256:abc"])
def test_install_yaml_refuses_an_image_without_tag_or_digest(image: str) -> None:
    proc = _install_yaml(image)
    assert proc.returncode == 2
    assert image in proc.stderr and proc.stdout == ""


def test_release_target_builds_every_artifact() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\nrelease:", 1)[1].split("\n\n", 1)[0]
    for step in ("-m build --sdist --wheel", "package charts/pulltag", "install-yaml.sh '$(IMAGE)'"):
        assert step in target
