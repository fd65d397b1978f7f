"""One registry, many spellings: every alias form of a host goes through config, credentials, the ledger
write and `pulltag history --image`, and each step agrees (on a real SQLite file and a real Redis).

Before one function canonicalised hosts, a registry configured as `index.docker.io` or with upper-case
letters was written to the ledger under one key and looked up by `history` under another: nothing found.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from listener.confirm import Confirmed
from listener.plan import TagPlan, plan
from listener.registry.credentials import Credentials, DockerConfigKeyring
from pulltag.cli import main
from pulltag.config import load_settings
from pulltag.images import canonical_host, parse_reference
from pulltag.store import LedgerEntry, open_store
from tests.unit.listener.factories import DIGEST, make_pull

# configured host, image as the pod names it, image as typed to `history --image`, credentials key,
# and the canonical image name the ledger keeps.
HUB = "docker.io/library/nginx"
HARBOR = "harbor.example.com/team/app"
ALIASES = [
    ("docker.io", "nginx:1.25", "index.docker.io/library/nginx", "https://index.docker.io/v1/", HUB),
    ("index.docker.io", "docker.io/library/nginx:1.25", "nginx", "docker.io", HUB),
    ("registry-1.docker.io", "nginx", "registry-1.docker.io/nginx", "index.docker.io", HUB),
    ("DOCKER.IO", "library/nginx:1", "nginx:latest", "registry-1.docker.io", HUB),
    ("docker.io:443", "nginx", "DOCKER.IO/library/nginx", "docker.io", HUB),
    ("Harbor.Example.com", f"{HARBOR}:v2", "HARBOR.example.com/team/app", "harbor.example.com", HARBOR),
    ("harbor.example.com:443", "Harbor.Example.com/team/app:v2", HARBOR, "https://HARBOR.EXAMPLE.COM",
     HARBOR),
    ("harbor.example.com", "harbor.example.com:443/team/app", "harbor.example.com:443/team/app:v1",
     "harbor.example.com:443", HARBOR),
    ("Registry.Local:5000", "registry.local:5000/app", "REGISTRY.local:5000/app", "http://registry.local:5000/v2/",
     "registry.local:5000/app"),
]  # fmt: skip


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """`pulltag.cli.main` configures the root logger for its process; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _plan(settings_path: Path, image: str) -> TagPlan:
    settings = load_settings(str(settings_path))
    ref = parse_reference(image)
    pull = make_pull(image=image)
    confirmed = Confirmed(pull=pull, digest=DIGEST, repository=ref.repository, registry=ref.registry)
    result = plan(confirmed, settings)
    assert isinstance(result, TagPlan), result
    return result


@pytest.mark.usefixtures("cli_logging")
@pytest.mark.parametrize(("configured", "pulled", "typed", "key", "canonical"), ALIASES)
def test_every_alias_form_is_one_registry(
    tmp_path: Path,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    configured: str,
    pulled: str,
    typed: str,
    key: str,
    canonical: str,
) -> None:
    secret = base64.b64encode(b"robot:pw-not-shown").decode()
    credentials = tmp_path / "config.json"
    credentials.write_text(json.dumps({"auths": {key: {"auth": secret}}}))
    config = tmp_path / "pulltag.yaml"
    registry = {"host": configured, "credentials": str(credentials)}
    config.write_text(yaml.safe_dump({"store": {"url": store_url}, "registries": [registry]}))

    # config: the pulled image's host finds the configured registry
    settings = load_settings(str(config))
    found = settings.registry_for(parse_reference(pulled).registry)
    assert found is not None and found.host == configured

    # credentials: the client looks its configured host up, as the OCI and Harbor clients do
    repository = parse_reference(pulled).repository
    creds = DockerConfigKeyring(credentials).lookup(found.host, repository)
    assert creds == Credentials("robot", "pw-not-shown")

    # ledger write: the tagger writes the plan's image name
    planned = _plan(config, pulled)
    store = open_store(store_url)
    try:
        store.append_ledger(
            LedgerEntry(
                image=planned.image_name,
                digest=DIGEST,
                tag=planned.tag,
                namespace=planned.namespace,
                pod=planned.pod,
                node=planned.node,
                pulled_at=planned.pulled_at,
                tagged_at=planned.pulled_at + 1,
                outcome="created",
                container=planned.container,
            )
        )
    finally:
        store.close()

    # history lookup, through the command
    assert main(["history", "--config", str(config), "--image", typed, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [entry["image"] for entry in entries] == [canonical]
    assert [entry["tag"] for entry in entries] == [planned.tag]


@pytest.mark.parametrize(
    ("configured", "other"),
    [
        ("registry.local:5000", "registry.local"),
        ("harbor.example.com:8443", "harbor.example.com"),
        ("docker.io:5000", "docker.io"),
        ("harbor.example.com", "harbor.example.org"),
    ],
)
def test_other_ports_and_hosts_stay_other_registries(tmp_path: Path, configured: str, other: str) -> None:
    config = tmp_path / "pulltag.yaml"
    config.write_text(yaml.safe_dump({"registries": [{"host": configured}]}))
    assert load_settings(str(config)).registry_for(other) is None
    assert canonical_host(configured) != canonical_host(other)


def test_port_80_is_the_default_only_for_a_plain_http_registry(tmp_path: Path) -> None:
    config = tmp_path / "pulltag.yaml"
    registries = [{"host": "plain.example.com:80", "insecure": True}, {"host": "tls.example.com:80"}]
    config.write_text(yaml.safe_dump({"registries": registries}))
    settings = load_settings(str(config))
    assert settings.registry_for("plain.example.com") is settings.registries[0]
    assert settings.registry_for("tls.example.com") is None
    assert settings.registry_for("tls.example.com:80") is settings.registries[1]
