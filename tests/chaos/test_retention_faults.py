"""Release passes under a misbehaving API server: watches dropped, pod lists failing (500) and
compactions (410) while the listener inventories what runs and releases what does not. The most
aggressive retention (no grace, no minimum age, keep no extra digest): only "running now" protects a
tag, so any inventory taken on doubt would show up as a wrongful release. 0 wrongful releases; every
stale tag released once the faults stop (the control: passes did run)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pulltag.store import LedgerEntry, open_store
from pulltag.store.base import ledger_image
from tests.chaos.chaos import create_pod, every, sized
from tests.chaos.conftest import MakeWorld
from tests.harness.harbor import FakeHarbor
from tests.harness.world import World

pytestmark = pytest.mark.timeout(600)

AGGRESSIVE: dict[str, Any] = {
    "enabled": True,
    "interval_seconds": 0.5,
    "keep_last": 0,
    "grace_hours": 0,
    "min_age_hours": 0,
}


def seed_stale_tags(world: World, harbor: FakeHarbor, count: int) -> tuple[str, str, list[str]]:
    """Tags pulltag created 30 days ago on a digest nothing runs: what the passes must release."""
    repository = harbor.new_repository("shop/stale")
    digest = harbor.seed_image(repository, "v1")
    image = ledger_image(f"{harbor.host}/{repository}")
    then = time.time() - 30 * 86400
    tags = [f"deployed_shop_20260101-{n:06d}" for n in range(count)]
    store = open_store(world.store_url)
    try:
        for tag in tags:
            harbor.set_tag(repository, tag, digest)
            store.append_ledger(
                LedgerEntry(image, digest, tag, "shop", "old", "node-1", then, then, "created")
            )
    finally:
        store.close()
    return repository, digest, tags


def released(world: World) -> list[dict[str, Any]]:
    return [e for e in world.ledger() if e["outcome"] == "released"]


def test_release_passes_during_watch_drops_and_pod_list_faults(make_world: MakeWorld) -> None:
    world = make_world(
        with_harbor=True, retention=AGGRESSIVE, listener_config={"inventory_interval_seconds": 2}
    )
    harbor = world.harbor
    assert harbor is not None
    stale_repo, stale_digest, stale_tags = seed_stale_tags(world, harbor, 10)

    # What runs through the whole test: 3 repositories, 2 pods each, tagged by the listener.
    running: dict[str, str] = {}
    pods = []
    for name in ("web", "api", "worker"):
        repository = harbor.new_repository(f"shop/{name}")
        running[repository] = harbor.seed_image(repository, "v1")
        for _ in range(2):
            pods.append(create_pod(world, "shop", {"app": f"{harbor.host}/{repository}:v1"}))
    world.wait_pods_running(pods, timeout=60)

    def tagged(repository: str, digest: str) -> list[str]:
        return [t for t in harbor.tags_of(repository, digest) if t.startswith("deployed_")]

    world.wait_for(lambda: all(tagged(r, d) for r, d in running.items()), 60, "the running digests' tags")
    protected = {(r, t) for r, d in running.items() for t in tagged(r, d)}

    faults = iter(range(10**6))

    def chaos() -> None:
        n = next(faults)
        if n % 3 == 0:
            world.api.close_watches(abrupt=n % 2 == 0)
        elif n % 3 == 1:  # every cluster-wide pod list fails for a while (the inventory's list)
            world.api.fail_requests(status=500, path_contains="/api/v1/pods?")
        else:
            world.api.clear_faults()
            world.api.compact()  # the next list with an old continue token or watch: 410
            world.api.close_watches()

    try:
        with every(1.0, chaos) as errors:
            deadline = time.monotonic() + sized(12, 60)
            while time.monotonic() < deadline:
                time.sleep(0.5)  # the chaos runs in its own thread; this is the test's duration
        assert not errors
    finally:
        world.api.clear_faults()

    # The control: with the faults gone, the passes release every stale tag.
    world.wait_for(lambda: harbor.tags_of(stale_repo, stale_digest) == ["v1"], 120, "the stale tags released")
    # 0 wrongful releases: nothing running lost a tag, and no release names a running digest.
    assert all(harbor.tag_digest(r, t) == running[r] for r, t in protected)
    wrongful = [e for e in released(world) if e["digest"] in set(running.values())]
    assert wrongful == []
    assert sorted(e["tag"] for e in released(world)) == sorted(stale_tags)
    assert world.metric("pulltag_retention_passes_total", outcome="inventory_error") >= 1
