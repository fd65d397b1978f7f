"""Release passes in the real test world: the fake API server (pods that run, faults mid-list), the
inventory reading it, a real store, the fake Harbor (which deletes tags) and the real docker-registry
(which refuses). Each test pairs what must be kept with a control that IS released in the same pass,
so it fails without the rule it guards (and cannot pass because nothing ran)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from listener.inventory import Inventory
from listener.metrics import ListenerMetrics
from listener.releaser import PassReport, Releaser
from pulltag.config import RetentionSettings, Settings, StoreSettings, TaggingSettings
from pulltag.store import InventoryPass, LedgerEntry, Store, open_store
from pulltag.store.base import ledger_image
from tests.harness.harbor import FakeHarbor
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.redis import RedisServer
from tests.integration.listener.helpers import Env

DAY = 86400.0
HOUR = 3600.0


_names = itertools.count(1)


def stamp() -> str:
    """A new tag name the default template renders ("deployed_apps_<timestamp>")."""
    return f"deployed_apps_20260101-{next(_names):06d}"


@dataclass
class World:
    """One test's retention world around `env` (API server, store) and a registry."""

    env: Env
    registry: Any  # FakeHarbor | RegistryServer
    store_url: str
    settings: Settings = field(init=False)
    store: Store = field(init=False)
    metrics: ListenerMetrics = field(default_factory=ListenerMetrics)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        registry = (
            self.registry.settings()
            if isinstance(self.registry, FakeHarbor)
            else self.registry.settings(None)
        )
        self.settings = Settings(
            store=StoreSettings(url=self.store_url),
            registries=(registry,),
            retention=RetentionSettings(enabled=True, keep_last=0, grace_hours=0),
        )
        self.store = open_store(self.store_url)

    def configure(self, **retention: Any) -> None:
        self.settings = replace(self.settings, retention=replace(self.settings.retention, **retention))

    def image(self) -> tuple[str, str]:
        repository = self.registry.new_repository("team/app")
        return repository, self.registry.seed_image(repository, "v1")

    def digest(self, repository: str, tag: str) -> str:
        digest: str = self.registry.seed_image(repository, tag)
        return digest

    def created(
        self, repository: str, digest: str, tag: str, *, days_ago: float = 30, in_ledger: bool = True
    ) -> str:
        """`tag` on `digest` in the registry, and (by default) in the ledger as created by pulltag."""
        self.registry.set_tag(repository, tag, digest)
        if in_ledger:
            when = self.clock() - days_ago * DAY
            image = ledger_image(f"{self.registry.host}/{repository}")
            entry = LedgerEntry(
                image, digest, tag, self.env.namespace, "web", "node-1", when, when, "created"
            )
            self.store.append_ledger(entry)
        return tag

    def runs(self, name: str, repository: str, digest: str) -> dict[str, Any]:
        pod = self.env.pod(name, f"{self.registry.host}/{repository}:v1")
        return self.env.run(pod, digest)

    def inventory(self, page_size: int = 500, clock: Callable[[], float] | None = None) -> Inventory:
        return Inventory(
            self.settings,
            self.store,
            self.env.kube(),
            self.metrics,
            clock=clock or self.clock,
            page_size=page_size,
        )

    def releaser(self, inventory: Inventory | None = None) -> Releaser:
        refresh = (inventory or self.inventory()).run_once
        return Releaser(self.settings, self.store, self.metrics, clock=self.clock, refresh=refresh)

    def pass_(self) -> PassReport:
        return self.releaser().run_once()

    def has(self, repository: str, tag: str, digest: str) -> bool:
        return bool(self.registry.tag_digest(repository, tag) == digest)

    def outcomes(self, *tags: str) -> list[tuple[str, str]]:
        entries = self.store.query_ledger(limit=10_000)
        return sorted((e.outcome, e.tag) for e in entries if e.outcome != "created" and e.tag in tags)


@pytest.fixture
def harbor_world(env: Env, fake_harbor: FakeHarbor, store_url: str) -> Iterator[World]:
    world = World(env, fake_harbor, store_url)
    yield world
    world.store.close()


@pytest.fixture
def oci_world(env: Env) -> Iterator[World]:
    world = World(env, env.registry, env.sqlite_url)
    yield world
    world.store.close()


def test_harbor_releases_the_stale_tag_and_keeps_a_digest_running_past_its_grace(harbor_world: World) -> None:
    w = harbor_world
    repo, old = w.image()
    running = w.digest(repo, "v2")
    stale_tag = w.created(repo, old, stamp())
    running_tag = w.created(repo, running, stamp(), days_ago=300)  # running for 300 days, grace 0
    w.runs("web-running", repo, running)
    report = w.pass_()
    assert report.outcome == "ran", report.detail
    assert w.registry.tags_of(repo, old) == ["v1"]  # only pulltag's tag went; the image stays
    assert w.has(repo, running_tag, running)
    assert w.outcomes(stale_tag, running_tag) == [("released", stale_tag)]
    assert (
        w.metrics.value("pulltag_tags_released_total", {"registry": w.registry.host, "outcome": "released"})
        == 1
    )


def test_a_digest_seen_running_an_hour_ago_is_kept(harbor_world: World) -> None:
    w = harbor_world
    w.configure(grace_hours=168)
    repo, old = w.image()
    recent = w.digest(repo, "v2")
    stale_tag = w.created(repo, old, stamp())
    recent_tag = w.created(repo, recent, stamp(), days_ago=60)
    pod = w.runs("web-recent", repo, recent)
    an_hour_ago = time.time() - HOUR
    assert w.inventory(clock=lambda: an_hour_ago).run_once() is not None
    w.env.api.delete("pods", pod["metadata"]["name"], w.env.namespace)
    w.pass_()
    assert w.has(repo, recent_tag, recent)
    assert not w.has(repo, stale_tag, old)
    assert w.outcomes(stale_tag, recent_tag) == [("released", stale_tag)]


def test_tags_made_by_hand_with_the_prefix_are_never_released(harbor_world: World) -> None:
    w = harbor_world
    repo, old = w.image()
    ours = w.created(repo, old, stamp())
    # Listed in the ledger (an import, a shared store) but not a name the template renders.
    hotfix = w.created(repo, old, "deployed_hotfix")
    # A name the template could render, but pulltag never created it.
    by_hand = w.created(repo, old, "deployed_apps_20250101-000000", in_ledger=False)
    w.pass_()
    assert w.has(repo, hotfix, old) and w.has(repo, by_hand, old)
    assert not w.has(repo, ours, old)


def test_another_clusters_tag_is_never_released(harbor_world: World) -> None:
    w = harbor_world
    w.settings = replace(
        w.settings,
        tagging=TaggingSettings(template="{prefix}_{cluster}_{namespace}_{timestamp}", cluster="east"),
    )
    repo, old = w.image()
    ours = w.created(repo, old, "deployed_east_apps_20260101-000001")
    theirs = w.created(repo, old, "deployed_west_apps_20260101-000001")  # same store, other cluster
    w.pass_()
    assert w.has(repo, theirs, old)
    assert not w.has(repo, ours, old)


@pytest.mark.parametrize("status", [500, 410])
def test_an_api_fault_in_the_middle_of_the_inventory_list_releases_nothing(
    harbor_world: World, kubeapi: FakeKubeAPI, status: int
) -> None:
    w = harbor_world
    repo, old = w.image()
    running = w.digest(repo, "v2")
    stale_tag = w.created(repo, old, stamp())
    for i in range(3):
        w.runs(f"web-{i}", repo, running)
    inventory = w.inventory(page_size=1)
    assert inventory.run_once() is not None  # a fresh, complete inventory is in the store
    kubeapi.fail_requests(count=1, status=status, path_contains="continue=")
    try:
        report = w.releaser(inventory).run_once()
    finally:
        kubeapi.clear_faults()
    assert report.outcome == "inventory_error"
    assert w.has(repo, stale_tag, old)
    assert w.outcomes(stale_tag) == []
    assert w.releaser(inventory).run_once().outcome == "ran"  # the fault gone, the pass releases
    assert not w.has(repo, stale_tag, old)


def test_a_store_error_mid_pass_releases_nothing(env: Env, fake_harbor: FakeHarbor, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        w = World(env, fake_harbor, redis.url())
        repo, old = w.image()
        stale_tag = w.created(repo, old, stamp())
        inventory = w.inventory()

        def inventory_then_store_dies() -> InventoryPass | None:
            done = inventory.run_once()
            redis.kill()
            return done

        releaser = Releaser(w.settings, w.store, w.metrics, refresh=inventory_then_store_dies)
        report = releaser.run_once()
        assert report.outcome == "store_error"
        assert w.has(repo, stale_tag, old)
        # The control: the same tag in a store that stays up is released (this Redis keeps no data
        # across the restart, so the ledger entry is written again).
        redis.restart()
        w.created(repo, old, stale_tag)
        assert w.pass_().outcome == "ran"
        assert not w.has(repo, stale_tag, old)
        w.store.close()
    finally:
        redis.stop()


def test_a_moved_tag_is_left_alone(harbor_world: World) -> None:
    w = harbor_world
    repo, old = w.image()
    other = w.digest(repo, "v2")
    moved = w.created(repo, old, stamp())
    control = w.created(repo, old, stamp())
    w.registry.set_tag(repo, moved, other)  # someone moved it after pulltag created it
    w.pass_()
    assert w.has(repo, moved, other)
    assert w.outcomes(moved, control) == [("moved", moved), ("released", control)]


def test_an_immutable_tag_is_kept(harbor_world: World) -> None:
    w = harbor_world
    repo, old = w.image()
    locked = w.created(repo, old, stamp())
    control = w.created(repo, old, stamp())
    w.registry.mark_immutable(repo, locked)
    w.pass_()
    assert w.has(repo, locked, old)
    assert w.outcomes(locked, control) == [("immutable", locked), ("released", control)]


def test_distribution_refuses_tag_deletion_unsupported_once_and_everything_intact(oci_world: World) -> None:
    w = oci_world
    repo, old = w.image()
    first = w.created(repo, old, stamp())
    second = w.created(repo, old, stamp())
    releaser = w.releaser()
    assert releaser.run_once().outcome == "ran"
    assert releaser.run_once().outcome == "ran"
    assert w.has(repo, first, old) and w.has(repo, second, old) and w.has(repo, "v1", old)
    assert w.registry.get_manifest(repo, old) is not None
    # Reported once for the registry: one attempt, one ledger entry, one count, over two passes.
    assert w.outcomes(first, second) == [("unsupported", first)]
    labels = {"registry": w.registry.host, "outcome": "unsupported"}
    assert w.metrics.value("pulltag_tags_released_total", labels) == 1
