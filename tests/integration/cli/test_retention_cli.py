"""`pulltag retention plan|apply|policy` as a user runs them: a real process, a real SQLite store, the
real docker-registry (which refuses tag deletion) and the fake Harbor (which deletes)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulltag.store import InventoryPass, LedgerEntry, Sighting, open_store
from pulltag.store.base import ledger_image
from tests.harness.harbor import FakeHarbor
from tests.harness.registry import RegistryServer

from .test_cli import pulltag

DAY = 86400.0
OLD_TAG = "deployed_prod_20260101-000000"
RUNNING_TAG = "deployed_prod_20260102-000000"


def write_config(tmp_path: Path, backend: Any, *, enabled: bool = True, **extra: Any) -> Path:
    registry = {k: v for k, v in asdict(backend.settings()).items() if v is not None}
    config = {
        "store": {"url": f"sqlite:///{tmp_path}/pulltag.db"},
        "registries": [registry],
        "retention": {"enabled": enabled, "keep_last": 0, **extra},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fill(tmp_path: Path, backend: Any, *, inventory_age: float = 30.0) -> tuple[str, str, str]:
    """An image with two digests pulltag tagged: the old one (30 days, not running), the running one."""
    repo = backend.new_repository()
    old = backend.seed_image(repo, "v1")
    running = backend.seed_image(repo, "v2")
    backend.set_tag(repo, OLD_TAG, old)
    backend.set_tag(repo, RUNNING_TAG, running)
    image = ledger_image(f"{backend.host}/{repo}")
    now = time.time()
    store = open_store(f"sqlite:///{tmp_path}/pulltag.db")
    for tag, digest, age in ((OLD_TAG, old, 30 * DAY), (RUNNING_TAG, running, 2 * DAY)):
        store.append_ledger(
            LedgerEntry(image, digest, tag, "prod", "web-0", "node-1", now - age, now - age, "created")
        )
    store.record_sightings([Sighting(image, running, "prod", 1, now - inventory_age)])
    store.complete_inventory_pass(InventoryPass(now - inventory_age - 1, now - inventory_age, 1))
    store.close()
    return repo, old, running


def ledger_outcomes(tmp_path: Path) -> list[tuple[str, str]]:
    store = open_store(f"sqlite:///{tmp_path}/pulltag.db")
    try:
        return [(e.outcome, e.tag) for e in store.query_ledger(limit=100) if e.outcome != "created"]
    finally:
        store.close()


def test_plan_lists_every_created_tag_with_its_reason(tmp_path: Path, fake_harbor: FakeHarbor) -> None:
    config = write_config(tmp_path, fake_harbor, enabled=False)
    fill(tmp_path, fake_harbor)
    proc = pulltag("retention", "plan", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    got = {d["tag"]: (d["action"], d["reason"]) for d in json.loads(proc.stdout)}
    assert got == {OLD_TAG: ("release", "stale"), RUNNING_TAG: ("keep", "running")}

    table = pulltag("retention", "plan", "--config", str(config))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["CREATED", "(UTC)", "ACTION", "REASON"]
    assert "1 to release" in table.stdout
    assert "retention.enabled is false" in table.stdout


def test_apply_refuses_when_retention_is_off(tmp_path: Path, fake_harbor: FakeHarbor) -> None:
    config = write_config(tmp_path, fake_harbor, enabled=False)
    repo, old, _ = fill(tmp_path, fake_harbor)
    proc = pulltag("retention", "apply", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pulltag retention apply: retention.enabled is false in the configuration; nothing released"
    ]
    assert OLD_TAG in fake_harbor.tags_of(repo, old)


def test_apply_deletes_through_harbor(tmp_path: Path, fake_harbor: FakeHarbor) -> None:
    config = write_config(tmp_path, fake_harbor)
    repo, old, running = fill(tmp_path, fake_harbor)
    proc = pulltag("retention", "apply", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert fake_harbor.tags_of(repo, old) == ["v1"]
    assert RUNNING_TAG in fake_harbor.tags_of(repo, running)
    assert ledger_outcomes(tmp_path) == [("released", OLD_TAG)]
    again = pulltag("retention", "apply", "--config", str(config))
    assert again.returncode == 0 and ledger_outcomes(tmp_path) == [("released", OLD_TAG)]
    history = pulltag("history", "--json", "--config", str(config))
    assert history.returncode == 0, history.stderr
    newest = json.loads(history.stdout)[0]
    assert (newest["outcome"], newest["tag"]) == ("released", OLD_TAG)
    table = pulltag("history", "--config", str(config))
    assert table.stdout.splitlines()[1].split()[2] == "released"


def test_apply_keeps_an_immutable_tag(tmp_path: Path, fake_harbor: FakeHarbor) -> None:
    config = write_config(tmp_path, fake_harbor)
    repo, old, _ = fill(tmp_path, fake_harbor)
    fake_harbor.mark_immutable(repo, OLD_TAG)
    proc = pulltag("retention", "apply", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert OLD_TAG in fake_harbor.tags_of(repo, old)
    assert ledger_outcomes(tmp_path) == [("immutable", OLD_TAG)]


def test_apply_on_distribution_is_unsupported_and_leaves_everything(
    tmp_path: Path, oci_registry: RegistryServer
) -> None:
    config = write_config(tmp_path, oci_registry)
    repo, old, running = fill(tmp_path, oci_registry)
    proc = pulltag("retention", "apply", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert ledger_outcomes(tmp_path) == [("unsupported", OLD_TAG)]
    assert oci_registry.tag_digest(repo, OLD_TAG) == old
    assert oci_registry.tag_digest(repo, "v1") == old  # the image and its other tags are intact
    assert oci_registry.get_manifest(repo, old) is not None
    assert oci_registry.tag_digest(repo, RUNNING_TAG) == running


def test_apply_on_a_stale_inventory_releases_nothing(tmp_path: Path, fake_harbor: FakeHarbor) -> None:
    config = write_config(tmp_path, fake_harbor)
    repo, old, _ = fill(tmp_path, fake_harbor, inventory_age=2 * 3600)
    proc = pulltag("retention", "apply", "--config", str(config))
    assert proc.returncode == 1
    assert "stale_inventory" in proc.stderr
    assert OLD_TAG in fake_harbor.tags_of(repo, old)
    assert ledger_outcomes(tmp_path) == []


@pytest.mark.parametrize(
    ("registry", "needles"),
    [
        ("harbor", ["retain always", "release*", "15 rules", "Immutability beats retention"]),
        ("ecr", ['"tagPrefixList": [\n          "release"', "1,000 tags per image", '"rulePriority": 1']),
        ("gar", ['"tagPrefixes": [\n        "release"', '"type": "Keep"']),
        ("gitlab", ['"name_regex_keep": "release.*"']),
        ("acr", ["only purges untagged manifests", "acr purge", "--filter"]),
    ],
)
def test_policy_prints_the_registry_rule_for_the_configured_prefix(
    tmp_path: Path, registry: str, needles: list[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tagging: {prefix: release}\n")
    proc = pulltag("retention", "policy", registry, "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    for needle in needles:
        assert needle in proc.stdout


def test_policy_for_an_unknown_registry_is_refused() -> None:
    proc = pulltag("retention", "policy", "quay")
    assert proc.returncode == 2
    assert "invalid choice: 'quay'" in proc.stderr


@pytest.mark.parametrize(
    "command", [["retention"], ["retention", "plan"], ["retention", "apply"]], ids=" ".join
)
def test_every_retention_command_has_help(command: list[str]) -> None:
    proc = pulltag(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: pulltag {' '.join(command)}")
