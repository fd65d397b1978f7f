"""The release pass over the in-memory store and a scripted registry: it releases exactly what the
decision says, records each outcome, and on any doubt releases nothing and says why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from listener.metrics import ListenerMetrics
from listener.registry.errors import TransientError
from listener.releaser import PASS_CLAIM_KEY, Releaser
from pulltag.config import ListenerSettings, RegistrySettings, RetentionSettings, Settings
from pulltag.store import InventoryPass, LedgerEntry, Sighting

from .fakes import MemoryStore

HOST = "registry.example.com"
IMAGE = f"{HOST}/team/app"
DAY = 86400.0
NOW = 1_800_000_000.0
OLD_A = "sha256:" + "a" * 64
OLD_B = "sha256:" + "b" * 64
RUNNING = "sha256:" + "c" * 64
TAG_A = "deployed_prod_20260101-000000"
TAG_B = "deployed_prod_20260102-000000"
TAG_RUNNING = "deployed_prod_20260301-000000"


class ScriptedRegistry:
    """delete_tag over {repository: {tag: digest}}, by tag only, with scripted refusals and failures."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = {"team/app": dict(tags)}
        self.answer: str | None = None  # "unsupported" / "immutable": refuse every deletion like that
        self.fail_after: int | None = None  # raise a transient error from this call on
        self.calls: list[str] = []

    def delete_tag(self, repository: str, tag: str, digest: str) -> str:
        self.calls.append(tag)
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise TransientError("registry answered 503 (scripted)")
        if self.answer is not None:
            return self.answer
        tags = self.tags.get(repository, {})
        if tag not in tags:
            return "absent"
        if tags[tag] != digest:
            return "moved"
        del tags[tag]
        return "released"


def created(tag: str, digest: str, days_ago: float) -> LedgerEntry:
    when = NOW - days_ago * DAY
    return LedgerEntry(IMAGE, digest, tag, "prod", "web-0", "node-1", when, when, "created")


class World:
    def __init__(self, **retention: object) -> None:
        self.store = MemoryStore()
        self.registry = ScriptedRegistry({TAG_A: OLD_A, TAG_B: OLD_B, TAG_RUNNING: RUNNING})
        self.metrics = ListenerMetrics()
        self.now = NOW
        for entry in (created(TAG_A, OLD_A, 30), created(TAG_B, OLD_B, 29), created(TAG_RUNNING, RUNNING, 2)):
            self.store.append_ledger(entry)
        self.store.record_sightings([Sighting(IMAGE, RUNNING, "prod", 2, NOW - 60)])
        self.store.complete_inventory_pass(InventoryPass(NOW - 100, NOW - 50, 1))
        self.settings = Settings(
            registries=(RegistrySettings(host=HOST),),
            retention=RetentionSettings(enabled=True, keep_last=0, **retention),  # type: ignore[arg-type]
        )
        self.factory_calls = 0

    def releaser(self, refresh: Callable[[], object] | None = None, **changes: object) -> Releaser:
        settings = replace(self.settings, **changes) if changes else self.settings

        def factory(registry: RegistrySettings) -> ScriptedRegistry:
            self.factory_calls += 1
            assert registry.host == HOST
            return self.registry

        return Releaser(
            settings,
            self.store,
            self.metrics,
            deleter_factory=factory,
            clock=lambda: self.now,
            refresh=refresh,
        )

    def outcomes(self) -> list[tuple[str, str]]:
        return [(o, t) for o, t in self.store.outcomes() if o != "created"]

    def passes(self, outcome: str) -> float:
        return self.metrics.value("pulltag_retention_passes_total", {"outcome": outcome})

    def released(self, outcome: str) -> float:
        return self.metrics.value("pulltag_tags_released_total", {"registry": HOST, "outcome": outcome})


def test_a_pass_releases_the_stale_tags_and_records_them() -> None:
    world = World()
    report = world.releaser().run_once()
    assert report.outcome == "ran"
    assert world.registry.tags["team/app"] == {TAG_RUNNING: RUNNING}
    assert world.outcomes() == [("released", TAG_A), ("released", TAG_B)]
    assert world.released("released") == 2
    assert world.passes("ran") == 1
    # The records carry the tag's identity and the pass's clock.
    release = world.store.ledger[-1]
    assert (release.image, release.digest, release.namespace, release.tagged_at) == (
        IMAGE,
        OLD_B,
        "prod",
        NOW,
    )


def test_a_second_pass_releases_nothing_twice() -> None:
    world = World()
    world.releaser().run_once()
    world.registry.calls.clear()
    assert world.releaser().run_once().acted == []
    assert world.registry.calls == []


def test_disabled_releases_nothing() -> None:
    world = World()
    world.settings = replace(world.settings, retention=RetentionSettings(enabled=False, keep_last=0))
    assert world.releaser().run_once().outcome == "disabled"
    assert world.registry.calls == [] and world.passes("disabled") == 1


def test_no_complete_inventory_releases_nothing() -> None:
    world = World()
    world.store.last_pass = None
    assert world.releaser().run_once().outcome == "no_inventory"
    assert world.registry.calls == [] and world.passes("no_inventory") == 1


def test_an_inventory_older_than_its_interval_releases_nothing() -> None:
    world = World()
    world.now = NOW + world.settings.listener.inventory_interval_seconds + 3600
    assert world.releaser().run_once().outcome == "stale_inventory"
    assert world.registry.calls == []


@pytest.mark.parametrize("method", ["query_ledger", "inventory", "last_inventory_pass", "claim"])
def test_a_store_error_while_reading_releases_nothing(method: str) -> None:
    world = World()
    world.store.failing.add(method)
    report = world.releaser().run_once()
    assert report.outcome == "store_error"
    assert world.registry.calls == [] and world.passes("store_error") == 1


def test_a_store_error_while_recording_stops_the_pass_and_the_next_records_it_once() -> None:
    world = World()
    world.store.failing.add("append_ledger")
    report = world.releaser().run_once()
    assert report.outcome == "store_error"
    assert world.registry.calls == [TAG_A]  # stopped right after the first deletion
    world.store.failing.clear()
    world.releaser().run_once()
    assert world.outcomes() == [("released", TAG_A), ("released", TAG_B)]
    assert world.store.ledger[-2].reason == "already gone"


def test_a_registry_failure_stops_the_pass() -> None:
    world = World()
    world.registry.fail_after = 1
    report = world.releaser().run_once()
    assert report.outcome == "registry_error"
    assert world.outcomes() == [("released", TAG_A)]
    assert TAG_B in world.registry.tags["team/app"]


def test_a_moved_tag_is_left_alone() -> None:
    world = World()
    world.registry.tags["team/app"][TAG_A] = RUNNING
    world.releaser().run_once()
    assert world.registry.tags["team/app"][TAG_A] == RUNNING
    assert world.outcomes() == [("moved", TAG_A), ("released", TAG_B)]
    assert world.released("moved") == 1
    world.registry.calls.clear()
    world.releaser().run_once()
    assert world.registry.calls == []  # moved is final: not asked again


def test_an_immutable_tag_is_kept_and_not_asked_again() -> None:
    world = World()
    world.registry.answer = "immutable"
    world.releaser().run_once()
    assert world.outcomes() == [("immutable", TAG_A), ("immutable", TAG_B)]
    world.registry.calls.clear()
    world.releaser().run_once()
    assert world.registry.calls == []


def test_unsupported_is_reported_once_per_registry() -> None:
    world = World()
    world.registry.answer = "unsupported"
    releaser = world.releaser()
    releaser.run_once()
    releaser.run_once()
    assert world.registry.calls == [TAG_A]
    assert world.outcomes() == [("unsupported", TAG_A)]
    assert world.released("unsupported") == 1
    assert world.registry.tags["team/app"][TAG_A] == OLD_A


def test_a_dry_run_deletes_nothing() -> None:
    world = World()
    report = world.releaser(listener=ListenerSettings(dry_run=True)).run_once()
    assert report.outcome == "dry_run"
    assert {d.tag for d, _ in report.acted} == {TAG_A, TAG_B}
    assert world.registry.calls == [] and world.outcomes() == []


def test_a_pass_in_progress_elsewhere_is_not_doubled() -> None:
    world = World()
    assert world.store.claim(PASS_CLAIM_KEY, 60)
    assert world.releaser().run_once().outcome == "busy"
    assert world.registry.calls == []


def test_an_unconfigured_registry_is_not_touched() -> None:
    world = World()
    world.settings = replace(world.settings, registries=())
    assert world.releaser().run_once().outcome == "ran"
    assert world.registry.calls == [] and world.factory_calls == 0


def test_the_clock_decides_what_is_old_enough() -> None:
    world = World(min_age_hours=24 * 40)
    releaser = world.releaser()
    assert releaser.run_once().acted == []
    world.now = NOW + 10.5 * DAY
    world.store.complete_inventory_pass(InventoryPass(world.now - 100, world.now - 50, 1))
    world.store.record_sightings([Sighting(IMAGE, RUNNING, "prod", 2, world.now - 60)])
    assert [d.tag for d, _ in releaser.run_once().acted] == [TAG_A]


def test_an_inventory_refresh_that_fails_releases_nothing_although_the_last_one_is_fresh() -> None:
    world = World()

    def refresh() -> None:
        raise RuntimeError("pod list failed mid-way: 410 Gone")

    report = world.releaser(refresh=refresh).run_once()
    assert report.outcome == "inventory_error"
    assert world.registry.calls == [] and world.passes("inventory_error") == 1


def test_an_inventory_refresh_that_did_not_complete_releases_nothing() -> None:
    world = World()
    assert world.releaser(refresh=lambda: None).run_once().outcome == "inventory_error"
    assert world.registry.calls == []


def test_the_refreshed_inventory_is_the_one_decided_on() -> None:
    world = World()

    def refresh() -> InventoryPass:  # OLD_A runs again since the last pass
        world.store.record_sightings([Sighting(IMAGE, OLD_A, "prod", 1, NOW - 5)])
        done = InventoryPass(NOW - 10, NOW - 1, 2)
        world.store.complete_inventory_pass(done)
        return done

    world.releaser(refresh=refresh).run_once()
    assert world.outcomes() == [("released", TAG_B)]


def test_a_stopping_releaser_deletes_nothing_more() -> None:
    world = World()
    releaser = world.releaser()
    releaser.stop()  # never started: stopping only marks it, as a lost Lease does mid-pass
    report = releaser.run_once()
    assert report.outcome == "stopped"
    assert world.registry.calls == []
