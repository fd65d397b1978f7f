"""The ConfigMap's config.yaml (and its commented registry example) load with pulltag's own reader."""

from __future__ import annotations

import re

import yaml

from pulltag.config import DEFAULT_STORE_URL, Settings, settings_from_dict
from tests.unit.manifests.render import CHART, MANIFESTS, Rendered


def _config_text(rendered: Rendered) -> str:
    config_map = rendered.get("ConfigMap", "pulltag-config")
    assert set(config_map["data"]) == {"config.yaml"}
    text: str = config_map["data"]["config.yaml"]
    return text


def test_config_file_is_the_same_everywhere(rendered: Rendered) -> None:
    """One file: the chart's files/config.yaml is manifests/base/app/config.yaml."""
    assert _config_text(rendered) == (MANIFESTS / "base" / "app" / "config.yaml").read_text(encoding="utf-8")
    assert (CHART / "files" / "config.yaml").read_text(encoding="utf-8") == _config_text(rendered)


def test_config_loads_and_keeps_defaults(rendered: Rendered) -> None:
    settings = settings_from_dict(yaml.safe_load(_config_text(rendered)), env={})
    defaults = Settings()
    assert settings.store.url == DEFAULT_STORE_URL
    assert settings.tagging == defaults.tagging
    assert settings.namespaces == defaults.namespaces
    assert settings.registries == ()


def test_commented_registry_example_is_valid(rendered: Rendered) -> None:
    text = _config_text(rendered)
    start = text.index("# registries:")
    example = "\n".join(
        re.sub(r"^# ?", "", line) for line in text[start:].splitlines() if line.startswith("#")
    )
    settings = settings_from_dict(yaml.safe_load(example), env={})
    (registry,) = settings.registries
    assert registry.host == "harbor.example.com"
    assert registry.type == "harbor"
    assert registry.credentials == "/etc/pulltag/registry/.dockerconfigjson"


def test_no_credentials_secret_is_shipped(rendered: Rendered) -> None:
    """GitOps: a sync must never overwrite the credentials External Secrets or Vault wrote; the Secret is
    referenced by name (optional, so the listener runs without it) and never rendered."""
    assert ("Secret", "pulltag-registry-credentials") not in rendered.by_key
    for secret in rendered.kinds("Secret"):
        assert secret.get("type") != "kubernetes.io/dockerconfigjson", secret["metadata"]["name"]
    for obj in rendered.kinds("Deployment"):
        for volume in obj["spec"]["template"]["spec"]["volumes"]:
            if volume["name"] == "registry-credentials":
                assert volume["secret"]["secretName"] == "pulltag-registry-credentials"
                assert volume["secret"]["optional"] is True
