"""`pulltag inventory` as a user runs it: a real process over a real store (SQLite file, Redis)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pulltag.store import InventoryPass, LedgerEntry, Sighting, open_store
from tests.integration.cli.test_cli import pulltag, store_url  # noqa: F401 (the fixture)

WEB = "registry.local:5000/shop/web"
D_RUNNING = "sha256:" + "ab" * 32
D_GONE = "sha256:" + "cd" * 32
NGINX_DIGEST = "sha256:" + "ef" * 32


def _created(
    image: str, digest: str, tag: str, namespace: str, at: float, outcome: str = "created"
) -> LedgerEntry:
    return LedgerEntry(
        image=image,
        digest=digest,
        tag=tag,
        namespace=namespace,
        pod="web-0",
        node="node-1",
        pulled_at=at,
        tagged_at=at,
        outcome=outcome,  # type: ignore[arg-type]
    )


def _fill(url: str) -> float:
    """Two digests running now (one in two namespaces), one seen only before the last pass."""
    store = open_store(url)
    now = time.time()
    started = now - 60
    store.record_sightings(
        [
            Sighting(WEB, D_RUNNING, "shop", 3, now - 3600),  # first seen an hour ago
            Sighting(WEB, D_RUNNING, "shop", 3, started + 1),
            Sighting(WEB, D_RUNNING, "staging", 1, started + 2),
            Sighting(WEB, D_GONE, "shop", 2, started - 600),  # gone before the last pass
            Sighting("registry-1.docker.io/nginx", NGINX_DIGEST, "ops", 4, started + 3),
        ]
    )
    store.complete_inventory_pass(InventoryPass(started, started + 5, 2))
    store.append_ledger(_created(WEB, D_RUNNING, "deployed_shop_1", "shop", now - 3000))
    store.append_ledger(_created(WEB, D_RUNNING, "deployed_staging_1", "staging", now - 2000))
    store.append_ledger(
        _created(WEB, D_RUNNING, "deployed_shop_9", "shop", now - 1000, "skipped")
    )  # not made
    store.append_ledger(_created(WEB, D_GONE, "deployed_shop_0", "shop", now - 9000))
    store.close()
    return started


def test_inventory_lists_the_digests_running_now_with_their_tags(store_url: str) -> None:  # noqa: F811
    _fill(store_url)
    env = {"PULLTAG_STORE_URL": store_url}
    proc = pulltag("inventory", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["registry"], r["repository"], r["digest"]) for r in rows] == [
        ("docker.io", "library/nginx", NGINX_DIGEST),
        ("registry.local:5000", "shop/web", D_RUNNING),
    ]
    web = rows[1]
    assert web["namespaces"] == ["shop", "staging"]
    assert web["pods"] == 4
    assert web["tags"] == ["deployed_shop_1", "deployed_staging_1"]
    assert web["last_seen"] - web["first_seen"] == pytest.approx(3600 - 60 + 2, abs=1e-3)
    assert rows[0]["tags"] == []

    table = pulltag("inventory", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("running at the last complete inventory pass")
    assert lines[1].split()[:5] == ["REGISTRY", "REPOSITORY", "DIGEST", "NAMESPACES", "PODS"]
    assert len(lines) == 4
    assert "shop,staging" in lines[3] and "deployed_shop_1, deployed_staging_1" in lines[3]


def test_inventory_filters_by_namespace_and_image(store_url: str) -> None:  # noqa: F811
    _fill(store_url)
    env = {"PULLTAG_STORE_URL": store_url}
    by_ns = json.loads(pulltag("inventory", "--json", "--namespace", "staging", env=env).stdout)
    assert [(r["digest"], r["namespaces"], r["pods"]) for r in by_ns] == [(D_RUNNING, ["staging"], 1)]
    # any reference form of the image; a digest in it narrows to that digest
    by_image = json.loads(pulltag("inventory", "--json", "--image", "nginx:1.27", env=env).stdout)
    assert [r["digest"] for r in by_image] == [NGINX_DIGEST]
    by_digest = json.loads(pulltag("inventory", "--json", "--image", f"{WEB}@{D_GONE}", env=env).stdout)
    assert by_digest == []  # not running now
    bad = pulltag("inventory", "--image", "UPPER/Case", env=env)
    assert bad.returncode == 2 and "--image" in bad.stderr


def test_no_complete_pass_means_nothing_known_to_run(store_url: str) -> None:  # noqa: F811
    store = open_store(store_url)
    store.record_sightings([Sighting(WEB, D_RUNNING, "shop", 1, time.time())])  # a refresh, no pass
    store.close()
    env = {"PULLTAG_STORE_URL": store_url}
    proc = pulltag("inventory", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    table = pulltag("inventory", env=env)
    assert table.stdout.startswith("no complete inventory pass yet")


def test_a_released_tag_protects_nothing(store_url: str) -> None:  # noqa: F811
    _fill(store_url)
    store = open_store(store_url)
    # the outcome the release pass writes (issue 13): the newest entry for the tag says it is gone
    store.append_ledger(_created(WEB, D_RUNNING, "deployed_staging_1", "staging", time.time(), "released"))
    store.close()
    rows = json.loads(pulltag("inventory", "--json", env={"PULLTAG_STORE_URL": store_url}).stdout)
    assert rows[1]["tags"] == ["deployed_shop_1"]


def test_inventory_help_and_empty_store(store_url: str) -> None:  # noqa: F811
    assert pulltag("inventory", "--help").stdout.startswith("usage: pulltag inventory")
    open_store(store_url).close()
    proc = pulltag("inventory", "--json", env={"PULLTAG_STORE_URL": store_url})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_inventory_never_creates_a_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/not/there/pulltag.db"
    for json_flag in ([], ["--json"]):
        proc = pulltag("inventory", *json_flag, env={"PULLTAG_STORE_URL": url})
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "not").exists()
