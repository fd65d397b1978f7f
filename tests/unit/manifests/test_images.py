"""Images: pulltag's named once (components/image, the chart's appVersion) with the project's version;
the store is Valkey (BSD-3-Clause), pinned."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.unit.manifests.render import CHART, MANIFESTS, ROOT, Rendered, all_containers, pod_spec, workloads

IMAGE = "ghcr.io/pulltag/pulltag"
STORE = re.compile(r"^docker\.io/valkey/valkey:\d+\.\d+\.\d+(-alpine)?$")


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def test_image_set_once_with_project_version() -> None:
    component = yaml.safe_load(
        (MANIFESTS / "components/image/kustomization.yaml").read_text(encoding="utf-8")
    )
    assert component["kind"] == "Component"
    assert component["images"] == [{"name": IMAGE, "newTag": _version()}]
    # Nowhere else: no other kustomization sets an image, no manifest hard-codes a tag.
    for path in MANIFESTS.rglob("*.yaml"):
        if path.parent.name == "image" and path.name == "kustomization.yaml":
            continue
        text = path.read_text(encoding="utf-8")
        assert f"{IMAGE}:" not in text, path
        if path.name == "kustomization.yaml":
            assert "images" not in (yaml.safe_load(text) or {}), path
    # The chart's default tag is its appVersion: the same version.
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == _version()


def test_rendered_images(rendered: Rendered) -> None:
    expected = f"{IMAGE}:{_version()}"
    images: set[str] = set()
    for obj in workloads(rendered):
        for c in all_containers(pod_spec(obj)):
            images.add(c["image"])
            assert c.get("imagePullPolicy") == "IfNotPresent", c["name"]
            if c["name"] in ("webhook", "listener"):
                assert c["image"] == expected
            else:
                assert c["name"] == "redis"
                assert STORE.match(c["image"]), c["image"]
    assert expected in images
    assert not any(i.endswith(":latest") or ":" not in i.rsplit("/", 1)[-1] for i in images)
