"""The ConfigMap's config.yaml (and its commented registry example) load with pulltag's own reader."""

from __future__ import annotations

import re

import yaml

from pulltag.config import DEFAULT_STORE_URL, Settings, settings_from_dict
from tests.unit.manifests.render import Rendered


def _config_text(rendered: Rendered) -> str:
    config_map = rendered.get("ConfigMap", "pulltag-config")
    assert set(config_map["data"]) == {"config.yaml"}
    text: str = config_map["data"]["config.yaml"]
    return text


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


def test_registry_credentials_placeholder(rendered: Rendered) -> None:
    secret = rendered.get("Secret", "pulltag-registry-credentials")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["stringData"] == {".dockerconfigjson": '{"auths":{}}'}
