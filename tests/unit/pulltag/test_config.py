"""Settings: every default, every override, and one clear line naming the key for each bad value."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pulltag.config import (
    ConfigError,
    ListenerSettings,
    NamespaceSettings,
    RegistrySettings,
    Settings,
    StoreSettings,
    TaggingSettings,
    WebhookSettings,
    canonical_host,
    check_registry_files,
    load_settings,
    settings_from_dict,
)

DESIGN_EXAMPLE = """
store: {url: "sqlite:///var/lib/pulltag/pulltag.db"}
tagging:
  prefix: deployed
  template: "{prefix}_{namespace}_{timestamp}"   # also {cluster}, {pod}, {container}, {node}
  timestamp_format: "%Y%m%d-%H%M%S"
  timezone: UTC
  scope: image
  cluster: ""
namespaces: {include: ["*"], exclude: ["kube-system"]}
registries:
  - host: harbor.example.com
    type: harbor
    credentials: /etc/pulltag/registry/.dockerconfigjson
    ca_file: null
    insecure: false
"""


def test_empty_file_gives_every_documented_default() -> None:
    s = settings_from_dict(None, env={})
    assert s.store.url == "sqlite:///var/lib/pulltag/pulltag.db"
    assert s.store.timeout_seconds == 2.0
    assert s.store.admission_ttl_seconds == 24 * 3600
    assert s.tagging.prefix == "deployed"
    assert s.tagging.template == "{prefix}_{namespace}_{timestamp}"
    assert s.tagging.timestamp_format == "%Y%m%d-%H%M%S"
    assert s.tagging.timezone == "UTC"
    assert s.tagging.scope == "image"
    assert s.tagging.cluster == ""
    assert s.namespaces.include == ("*",)
    assert s.namespaces.exclude == ("kube-system",)
    assert s.registries == ()
    assert s.webhook.store_budget_seconds == 0.3
    assert s.webhook.max_body_bytes == 4 * 1024 * 1024
    assert s.listener.workers == 4
    assert s.listener.imageid_wait_seconds == 60.0
    assert s.listener.reconcile_interval_seconds == 6 * 3600
    assert s.listener.watch_read_timeout_seconds == 90.0
    assert s.listener.watch_backoff_max_seconds == 30.0
    assert s.listener.lease_duration_seconds == 15.0
    assert s.listener.claim_ttl_seconds == 60.0
    assert s.listener.failed_retry_seconds == 300.0
    assert s.tagging.backfill is False
    assert s.listener.inventory_interval_seconds == 600.0


def test_the_design_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(DESIGN_EXAMPLE)
    s = load_settings(path, env={})
    assert s.registries == (
        RegistrySettings(
            host="harbor.example.com", type="harbor", credentials="/etc/pulltag/registry/.dockerconfigjson"
        ),
    )
    assert s.registry_for("harbor.example.com") is s.registries[0]
    assert s.registry_for("HARBOR.example.com") is s.registries[0]
    assert s.registry_for("other.example.com") is None


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.store = s.store  # type: ignore[misc]


def test_env_store_url_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("store: {url: 'sqlite:///a.db', timeout_seconds: 1.5}\n")
    s = load_settings(path, env={"PULLTAG_STORE_URL": "redis://:pw@127.0.0.1:6379/2"})
    assert s.store.url == "redis://:pw@127.0.0.1:6379/2"
    assert s.store.timeout_seconds == 1.5


def test_config_path_from_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tagging: {prefix: ran}\n")
    assert load_settings(None, env={"PULLTAG_CONFIG": str(path)}).tagging.prefix == "ran"


def test_docker_hub_aliases_are_one_registry() -> None:
    s = settings_from_dict({"registries": [{"host": "docker.io"}]}, env={})
    for host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert s.registry_for(host) is s.registries[0]
    assert canonical_host(" Index.Docker.IO ") == "docker.io"


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ([1, 2], "(top level)", "mapping"),
        ({"stor": {}}, "stor", "unknown key"),
        ({"store": {"url": "mysql://x"}}, "store.url", "sqlite:///"),
        ({"store": {"url": "sqlite:///"}}, "store.url", "path"),
        ({"store": {"url": 5}}, "store.url", "string"),
        ({"store": {"timeout_seconds": "2"}}, "store.timeout_seconds", "number"),
        ({"store": {"timeout_seconds": True}}, "store.timeout_seconds", "number"),
        ({"store": {"timeout_seconds": 0}}, "store.timeout_seconds", "greater than 0"),
        ({"store": {"ledger_max_entries": 0}}, "store.ledger_max_entries", "at least 1"),
        ({"store": {"bogus": 1}}, "store.bogus", "unknown key"),
        ({"store": "redis://x"}, "store", "mapping"),
        ({"tagging": {"prefix": "-bad"}}, "tagging.prefix", "OCI tag grammar"),
        ({"tagging": {"prefix": "has space"}}, "tagging.prefix", "OCI tag grammar"),
        ({"tagging": {"prefix": ""}}, "tagging.prefix", "OCI tag grammar"),
        ({"tagging": {"prefix": "x" * 129}}, "tagging.prefix", "OCI tag grammar"),
        ({"tagging": {"template": "{prefix}_{user}"}}, "tagging.template", "unknown variable {user}"),
        ({"tagging": {"template": "{prefix"}}, "tagging.template", "malformed"),
        ({"tagging": {"template": "{prefix!r}"}}, "tagging.template", "malformed"),
        ({"tagging": {"template": "{0}"}}, "tagging.template", "unknown variable"),
        ({"tagging": {"template": "a/{prefix}"}}, "tagging.template", "OCI tag grammar"),
        ({"tagging": {"timestamp_format": "%Y %H:%M"}}, "tagging.template", "OCI tag grammar"),
        ({"tagging": {"scope": "cluster"}}, "tagging.scope", "image, namespace, every"),
        ({"tagging": {"timezone": "Mars/Olympus"}}, "tagging.timezone", "unknown time zone"),
        ({"tagging": {"cluster": "a b"}}, "tagging.cluster", "letters"),
        ({"tagging": {"prefx": "a"}}, "tagging.prefx", "unknown key"),
        ({"namespaces": {"include": "default"}}, "namespaces.include", "list"),
        ({"namespaces": {"exclude": [""]}}, "namespaces.exclude", "list"),
        ({"registries": {"host": "x"}}, "registries", "list"),
        ({"registries": [{"type": "oci"}]}, "registries[0].host", "required"),
        ({"registries": [{"host": "https://x.io"}]}, "registries[0].host", "no scheme"),
        ({"registries": [{"host": "x.io/path"}]}, "registries[0].host", "no scheme"),
        ({"registries": [{"host": "x.io", "type": "quay"}]}, "registries[0].type", "harbor or oci"),
        ({"registries": [{"host": "x.io", "insecure": "yes"}]}, "registries[0].insecure", "true or false"),
        ({"registries": [{"host": "x.io", "credentials": 3}]}, "registries[0].credentials", "string"),
        ({"registries": [{"host": "x.io"}, {"host": "X.IO"}]}, "registries[1].host", "twice"),
        ({"registries": ["x.io"]}, "registries[0]", "mapping"),
        ({"webhook": {"store_budget_seconds": -1}}, "webhook.store_budget_seconds", "greater"),
        ({"listener": {"workers": 0}}, "listener.workers", "at least 1"),
        ({"listener": {"workers": 2.5}}, "listener.workers", "integer"),
        ({"listener": {"dry_run": 1}}, "listener.dry_run", "true or false"),
        ({"listener": {"watch_read_timeout_seconds": 0}}, "listener.watch_read_timeout_seconds", "greater"),
        ({"listener": {"watch_backoff_max_seconds": "1"}}, "listener.watch_backoff_max_seconds", "number"),
        ({"listener": {"lease_duration_seconds": True}}, "listener.lease_duration_seconds", "number"),
        ({"listener": {"claim_ttl_seconds": -5}}, "listener.claim_ttl_seconds", "greater"),
        ({"listener": {"failed_retry_seconds": 0}}, "listener.failed_retry_seconds", "greater"),
        ({"tagging": {"backfill": "yes"}}, "tagging.backfill", "true or false"),
        ({"listener": {"inventory_interval_seconds": 0}}, "listener.inventory_interval_seconds", "greater"),
    ],
)
def test_bad_values_name_the_key(raw: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(raw, env={})
    assert info.value.key == key
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config: {key}: ")
    assert fragment in message


def test_bad_env_store_url_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict({}, env={"PULLTAG_STORE_URL": "postgres://x"})
    assert info.value.key == "PULLTAG_STORE_URL"


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: {url: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings(bad, env={})


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=12,
    )
)
def test_any_yaml_value_gives_settings_or_config_error(raw: Any) -> None:
    try:
        settings_from_dict(raw, env={})
    except ConfigError as exc:
        assert "\n" not in str(exc)


@given(
    st.dictionaries(
        st.sampled_from(["store", "tagging", "namespaces", "registries", "webhook", "listener"]),
        st.dictionaries(st.text(max_size=12), st.none() | st.integers() | st.text(max_size=5), max_size=3),
        max_size=3,
    )
)
def test_sections_with_garbage_give_config_error(raw: dict[str, Any]) -> None:
    # Either valid settings or a ConfigError; any other exception fails the test.
    with contextlib.suppress(ConfigError):
        settings_from_dict(raw, env={})


def test_process_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"tagging": {"scope": "galaxy"}}))
    proc = subprocess.run(
        [sys.executable, "-m", "pulltag", "history", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["pulltag: config: tagging.scope: must be one of image, namespace, every; got 'galaxy'"]
    assert proc.stdout == ""


def test_listener_watch_and_lease_timing_can_be_set() -> None:
    s = settings_from_dict(
        {
            "listener": {
                "watch_read_timeout_seconds": 3,
                "watch_backoff_max_seconds": 2.5,
                "lease_duration_seconds": 4,
                "failed_retry_seconds": 30,
            }
        },
        env={},
    )
    assert s.listener.failed_retry_seconds == 30.0
    assert s.listener.watch_read_timeout_seconds == 3.0
    assert s.listener.watch_backoff_max_seconds == 2.5
    assert s.listener.lease_duration_seconds == 4.0


# A value of each field type that differs from every default, to show each key is read into its field.
SAMPLES: dict[object, Any] = {
    str: "x-1",
    str | None: "/etc/pulltag/file",
    bool: True,
    float: 7.5,
    int: 7,
    tuple[str, ...]: ["team-*"],
}
SECTIONS = {
    "store": StoreSettings,
    "tagging": TaggingSettings,
    "namespaces": NamespaceSettings,
    "webhook": WebhookSettings,
    "listener": ListenerSettings,
}
# Fields whose section adds a rule beyond the type: a valid value other than the default.
SPECIAL = {
    ("store", "url"): "redis://127.0.0.1:6379/3",
    ("tagging", "template"): "{prefix}-{cluster}_{timestamp}",
    ("tagging", "timestamp_format"): "%Y%m%d",
    ("tagging", "timezone"): "Europe/Berlin",
    ("tagging", "scope"): "every",
    ("listener", "catch_up"): False,
}
FIELDS = [(name, f.name) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("section", "key"), FIELDS, ids=[f"{s}.{k}" for s, k in FIELDS])
def test_every_field_of_a_section_is_a_key(section: str, key: str) -> None:
    cls = SECTIONS[section]
    value = SPECIAL[(section, key)] if (section, key) in SPECIAL else SAMPLES[get_type_hints(cls)[key]]
    settings = settings_from_dict({section: {key: value}}, env={})
    read = getattr(getattr(settings, section), key)
    assert read == (tuple(value) if isinstance(value, list) else value)
    assert read != getattr(cls(), key)


@pytest.mark.parametrize("section", [*SECTIONS, "registries"])
def test_unknown_key_names_the_fields_as_known_keys(section: str) -> None:
    raw: dict[str, Any] = {section: {"bogus": 1}}
    cls: type[Any] = SECTIONS.get(section, RegistrySettings)
    path = f"{section}.bogus"
    if section == "registries":
        raw = {"registries": [{"host": "r.io", "bogus": 1}]}
        path = "registries[0].bogus"
    with pytest.raises(ConfigError) as info:
        settings_from_dict(raw, env={})
    assert info.value.key == path
    known = ", ".join(sorted(f.name for f in dataclasses.fields(cls)))
    assert info.value.reason == f"unknown key (known: {known})"


def test_every_registry_field_is_a_key(tmp_path: Path) -> None:
    raw = {
        "host": "r.io:5000",
        "type": "harbor",
        "credentials": "/c.json",
        "ca_file": "/ca.pem",
        "insecure": True,
        "connect_timeout": 1.5,
        "read_timeout": 9,
    }
    assert set(raw) == {f.name for f in dataclasses.fields(RegistrySettings)}
    (registry,) = settings_from_dict({"registries": [raw]}, env={}).registries
    assert dataclasses.asdict(registry) == {**raw, "read_timeout": 9.0}


def _with_ca(path: object) -> Settings:
    return settings_from_dict(
        {"registries": [{"host": "a.io"}, {"host": "b.io", "ca_file": str(path)}]}, env={}
    )


def test_a_missing_ca_file_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(ConfigError) as info:
        check_registry_files(_with_ca(missing))
    assert str(info.value) == f"config: registries[1].ca_file: no such file: {missing}"


def test_an_unreadable_ca_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_registry_files(_with_ca(tmp_path))  # a directory
    assert info.value.key == "registries[1].ca_file"
    assert info.value.reason.startswith(f"cannot read {tmp_path}: ")


def test_a_readable_ca_file_and_a_missing_credentials_file_pass(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = settings_from_dict(
        {"registries": [{"host": "b.io", "ca_file": str(ca), "credentials": str(tmp_path / "none.json")}]},
        env={},
    )
    check_registry_files(settings)  # raises on a problem; a Secret may be mounted after start
    assert settings.registries[0].ca_file == str(ca)
