"""PULLTAG_CONFIG in every pulltag container: the README's check commands (`kubectl exec ... -- pulltag
registry check`, `... pulltag history`) resolve the same config as the process, run here with the env the
rendered Deployments give a container (fieldRefs, Secret keys and $(VAR) filled in as the kubelet does,
the mounted files placed in a temporary folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pulltag.config import load_settings
from tests.unit.manifests.render import NAMESPACE, ROOT, Obj, Rendered, mounts_of, pod_spec, volumes_of

PASSWORD = "s3cretPassw0rd"
REGISTRY_DIR = "/etc/pulltag/registry"
# A registry that refuses connections at once; its credentials file is where the Secret is mounted.
REGISTRY = {
    "host": "127.0.0.1:1",
    "type": "oci",
    "insecure": True,
    "credentials": f"{REGISTRY_DIR}/.dockerconfigjson",
}
VARIANTS = ("default", "single-pod", "chart", "chart-single-pod")


def kubelet_env(container: Obj, pod_name: str = "pulltag-listener-7f9c-abcde") -> dict[str, str]:
    """The container's environment as the kubelet builds it (only the sources these manifests use)."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), entry["value"])
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[entry["name"]] = {"metadata.namespace": NAMESPACE, "metadata.name": pod_name}[path]
        else:
            assert source["secretKeyRef"]["key"] == "password", entry
            env[entry["name"]] = PASSWORD
    return env


def _listener(rendered: Rendered) -> tuple[Obj, Obj]:
    for obj in rendered.kinds("Deployment"):
        for c in pod_spec(obj)["containers"]:
            if c["name"] == "listener":
                return obj, c
    raise AssertionError(f"{rendered.name}: no listener container")


def _container_env(rendered: Rendered, tmp_path: Path) -> dict[str, str]:
    """The listener's env with the config file and the (empty: Secret missing) credentials folder placed
    under tmp_path where the Deployment mounts them; the config lists one registry."""
    deployment, container = _listener(rendered)
    env = kubelet_env(container)
    mount = mounts_of(container)[env["PULLTAG_CONFIG"]]
    volume = volumes_of(pod_spec(deployment))[mount["name"]]
    assert volume["configMap"]["name"] == "pulltag-config" and mount["subPath"] == "config.yaml"
    text = rendered.get("ConfigMap", "pulltag-config")["data"]["config.yaml"]
    config = yaml.safe_load(text) or {}
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    config["registries"] = [{**REGISTRY, "credentials": str(registry_dir / ".dockerconfigjson")}]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert REGISTRY_DIR in mounts_of(container)
    return {**env, "PULLTAG_CONFIG": str(config_file)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_commands_in_the_container_resolve_the_process_config(
    rendered_all: dict[str, Rendered], variant: str, tmp_path: Path
) -> None:
    env = _container_env(rendered_all[variant], tmp_path)
    settings = load_settings(None, env)
    assert [r.host for r in settings.registries] == ["127.0.0.1:1"]
    if rendered_all[variant].single_pod:
        assert settings.store.url == "sqlite:///var/lib/pulltag/pulltag.db"
    else:
        assert settings.store.url == f"redis://:{PASSWORD}@pulltag-redis.{NAMESPACE}.svc:6379/0"


@pytest.mark.parametrize("variant", ["default", "chart"])
def test_registry_check_names_the_missing_secret(
    rendered_all: dict[str, Rendered], variant: str, tmp_path: Path
) -> None:
    """`kubectl exec deploy/pulltag-listener -- pulltag registry check` with the Deployment's env: the
    configured registry is checked (not "no registries configured"), and the missing Secret is named."""
    env = {**_container_env(rendered_all[variant], tmp_path), "PATH": os.environ.get("PATH", "/usr/bin")}
    proc = subprocess.run(
        [sys.executable, "-m", "pulltag", "registry", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert "no registries configured" not in out
    assert "127.0.0.1:1" in out
    assert "Secret pulltag-registry-credentials is missing" in out
    assert proc.returncode != 0
    assert PASSWORD not in out
