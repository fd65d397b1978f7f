"""The release decision, rule by rule. Every row starts from a tag that IS released (the baseline test
proves it) and changes one fact: the row fails if the rule it names is taken out of `_decide`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from listener.plan import fallback_tag, render_tag
from listener.retention import TagDecision, TemplateMatcher, inventory_blocker, plan_retention
from pulltag.config import RetentionSettings, TaggingSettings
from pulltag.store import InventoryEntry, InventoryPass, LedgerEntry

HOUR = 3600.0
DAY = 24 * HOUR
NOW = 1_800_000_000.0
IMAGE = "registry.example.com/team/app"
OLD = "sha256:" + "0" * 64
TAG = "deployed_prod_20260101-000000"
RUNNING = "sha256:" + "f" * 64


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


def entry(
    tag: str, digest_: str, *, outcome: str = "created", namespace: str = "prod", **kw: object
) -> LedgerEntry:
    fields: dict[str, object] = {
        "image": IMAGE,
        "digest": digest_,
        "tag": tag,
        "namespace": namespace,
        "pod": "web-0",
        "node": "node-1",
        "pulled_at": NOW - 30 * DAY,
        "tagged_at": NOW - 30 * DAY,
        "outcome": outcome,
        "reason": "",
    }
    fields.update(kw)
    return LedgerEntry(**fields)  # type: ignore[arg-type]


def seen(
    digest_: str, *, last_seen: float, namespace: str = "prod", first_seen: float | None = None
) -> InventoryEntry:
    return InventoryEntry(IMAGE, digest_, namespace, 1, first_seen or last_seen, last_seen)


PASS = InventoryPass(started_at=NOW - 100, completed_at=NOW - 50, digests=1)


@dataclasses.dataclass
class World:
    """The baseline: OLD's tag is 30 days old, OLD last ran 30 days ago, five newer digests (four, then
    RUNNING, the one running now) followed it in its repository and namespace; the inventory is fresh."""

    ledger: list[LedgerEntry]
    inventory: list[InventoryEntry]
    last_pass: InventoryPass | None = PASS
    tagging: TaggingSettings = dataclasses.field(default_factory=TaggingSettings)
    retention: RetentionSettings = dataclasses.field(default_factory=lambda: RetentionSettings(enabled=True))
    now: float = NOW

    def decide(self, tag: str = TAG) -> TagDecision:
        decisions = plan_retention(
            ledger=self.ledger,
            inventory=self.inventory,
            last_pass=self.last_pass,
            tagging=self.tagging,
            retention=self.retention,
            now=self.now,
            max_inventory_age=600.0,
        )
        return next(d for d in decisions if d.tag == tag)


def baseline() -> World:
    newer = [
        entry(
            f"deployed_prod_2026020{n}-000000",
            digest(n),
            pulled_at=NOW - (30 - n) * DAY,
            tagged_at=NOW - (30 - n) * DAY,
        )
        for n in range(1, 5)
    ]
    return World(
        ledger=[
            entry(TAG, OLD),
            *newer,
            entry("deployed_prod_20260110-000000", RUNNING, pulled_at=NOW - 2 * DAY),
        ],
        inventory=[seen(RUNNING, last_seen=NOW - 60, first_seen=NOW - 2 * DAY)],
    )


def test_the_baseline_tag_is_released() -> None:
    got = baseline().decide()
    assert (got.action, got.reason) == ("release", "stale")
    assert (got.image, got.digest, got.namespace, got.registry, got.repository) == (
        IMAGE,
        OLD,
        "prod",
        "registry.example.com",
        "team/app",
    )


def _running_in_another_namespace_for_ages(w: World) -> None:
    # Running since long before the grace period; grace 0 so only "running now" can keep it.
    w.inventory.append(seen(OLD, last_seen=PASS.started_at, namespace="batch", first_seen=NOW - 300 * DAY))
    w.retention = dataclasses.replace(w.retention, grace_hours=0)


def _seen_running_an_hour_ago(w: World) -> None:
    w.inventory.append(seen(OLD, last_seen=NOW - HOUR, first_seen=NOW - 40 * DAY))


def _pulled_within_grace_per_ledger(w: World) -> None:
    # A later pull of OLD in another namespace (the inventory never saw it: installed since).
    w.ledger.append(entry("deployed_batch_x", OLD, outcome="skipped", namespace="batch", pulled_at=NOW - DAY))


def _only_four_newer_digests(w: World) -> None:
    w.ledger = [e for e in w.ledger if e.digest != digest(4)]


def _newer_digests_in_another_namespace(w: World) -> None:
    w.ledger = [dataclasses.replace(e, namespace="staging") if e.digest != OLD else e for e in w.ledger]
    w.inventory = [dataclasses.replace(i, namespace="staging") for i in w.inventory]


def _newer_digests_in_another_repository(w: World) -> None:
    w.ledger = [dataclasses.replace(e, image=IMAGE + "-other") if e.digest != OLD else e for e in w.ledger]
    w.inventory = [dataclasses.replace(i, image=IMAGE + "-other") for i in w.inventory]


def _tag_younger_than_min_age(w: World) -> None:
    w.ledger[0] = dataclasses.replace(w.ledger[0], tagged_at=NOW - 23 * HOUR)


def _tag_created_after_the_inventory_began(w: World) -> None:
    w.retention = dataclasses.replace(w.retention, min_age_hours=0)
    w.ledger[0] = dataclasses.replace(w.ledger[0], tagged_at=PASS.started_at + 1)


def _hand_made_tag_with_the_prefix(w: World) -> None:
    w.ledger[0] = dataclasses.replace(w.ledger[0], tag="deployed_hotfix")


def _another_clusters_tag(w: World) -> None:
    w.tagging = TaggingSettings(template="{prefix}_{cluster}_{namespace}_{timestamp}", cluster="east")
    w.ledger[0] = dataclasses.replace(w.ledger[0], tag="deployed_west_prod_20260101-000000")


def _already_released(w: World) -> None:
    w.ledger.append(entry(TAG, OLD, outcome="released", tagged_at=NOW - DAY))


def _moved(w: World) -> None:
    w.ledger.append(entry(TAG, OLD, outcome="moved", tagged_at=NOW - DAY))


def _immutable(w: World) -> None:
    w.ledger.append(entry(TAG, OLD, outcome="immutable", tagged_at=NOW - DAY))


def _no_inventory_pass_yet(w: World) -> None:
    w.last_pass = None


def _inventory_too_old(w: World) -> None:
    w.last_pass = InventoryPass(started_at=NOW - 700, completed_at=NOW - 650, digests=1)


def _inventory_pass_never_completed(w: World) -> None:
    w.last_pass = InventoryPass(started_at=NOW - 10, completed_at=NOW - 50, digests=1)


@pytest.mark.parametrize(
    ("change", "action", "reason"),
    [
        (_running_in_another_namespace_for_ages, "keep", "running"),
        (_seen_running_an_hour_ago, "keep", "grace"),
        (_pulled_within_grace_per_ledger, "keep", "grace"),
        (_only_four_newer_digests, "keep", "keep_last"),
        (_newer_digests_in_another_namespace, "keep", "keep_last"),
        (_newer_digests_in_another_repository, "keep", "keep_last"),
        (_tag_younger_than_min_age, "keep", "too_young"),
        (_tag_created_after_the_inventory_began, "keep", "newer_than_inventory"),
        (_hand_made_tag_with_the_prefix, "keep", "foreign_name"),
        (_another_clusters_tag, "keep", "foreign_name"),
        (_already_released, "done", "released"),
        (_moved, "done", "moved"),
        (_immutable, "done", "immutable"),
        (_no_inventory_pass_yet, "keep", "no_inventory"),
        (_inventory_too_old, "keep", "stale_inventory"),
        (_inventory_pass_never_completed, "keep", "stale_inventory"),
    ],
)
def test_each_rule_keeps_the_tag(change: Callable[[World], None], action: str, reason: str) -> None:
    world = baseline()
    change(world)
    tag = world.ledger[0].tag
    got = world.decide(tag)
    assert (got.action, got.reason) == (action, reason)


def test_only_tags_pulltag_created_are_decided() -> None:
    world = baseline()
    world.ledger[0] = dataclasses.replace(world.ledger[0], outcome="exists")
    decisions = plan_retention(
        ledger=world.ledger,
        inventory=world.inventory,
        last_pass=PASS,
        tagging=world.tagging,
        retention=world.retention,
        now=NOW,
        max_inventory_age=600.0,
    )
    assert TAG not in {d.tag for d in decisions}


def test_unsupported_is_not_final_the_tag_is_tried_again() -> None:
    world = baseline()
    world.ledger.append(entry(TAG, OLD, outcome="unsupported", tagged_at=NOW - DAY))
    assert world.decide().action == "release"


def test_a_release_before_the_tag_was_created_again_does_not_count() -> None:
    world = baseline()
    world.ledger.append(entry(TAG, OLD, outcome="released", tagged_at=NOW - 40 * DAY))
    assert world.decide().action == "release"


def test_a_final_outcome_for_another_digest_does_not_count() -> None:
    world = baseline()
    world.ledger.append(entry(TAG, digest(9), outcome="released", tagged_at=NOW - DAY))
    assert world.decide().action == "release"


def test_keep_last_zero_keeps_no_extra_digest() -> None:
    world = baseline()
    world.retention = dataclasses.replace(world.retention, keep_last=0)
    world.ledger = [world.ledger[0]]
    assert world.decide().action == "release"


def test_the_digest_suffixed_fallback_name_is_ours_too() -> None:
    world = baseline()
    world.ledger[0] = dataclasses.replace(world.ledger[0], tag=fallback_tag(TAG, OLD))
    assert world.decide(fallback_tag(TAG, OLD)).action == "release"


@pytest.mark.parametrize(
    ("template", "cluster", "tag", "ours"),
    [
        ("{prefix}_{namespace}_{timestamp}", "", "deployed_prod_20260101-000000", True),
        ("{prefix}_{namespace}_{timestamp}", "", "deployed_prod_20260101-000000_0123456789ab", True),
        ("{prefix}_{namespace}_{timestamp}", "", "deployed_prod_20260101-000000_0123", False),
        ("{prefix}_{namespace}_{timestamp}", "", "deployed_prod_latest", False),
        ("{prefix}_{namespace}_{timestamp}", "", "deployed_prod_2026-01-01", False),
        ("{prefix}_{namespace}_{timestamp}", "", "deployedx_prod_20260101-000000", False),
        ("{prefix}_{namespace}_{timestamp}", "", "release_prod_20260101-000000", False),
        ("{prefix}_{cluster}_{namespace}_{timestamp}", "east", "deployed_east_prod_20260101-000000", True),
        ("{prefix}_{cluster}_{namespace}_{timestamp}", "east", "deployed_west_prod_20260101-000000", False),
        ("{prefix}_{cluster}_{namespace}_{timestamp}", "east", "deployed_east2_prod_20260101-000000", False),
        ("{prefix}_{namespace}_{cluster}_{timestamp}", "a", "deployed_prod_b_20260101-000000", False),
        ("{prefix}_{namespace}_{cluster}_{timestamp}", "a", "deployed_prod_a_20260101-000000", True),
        ("{prefix}-{node}-{pod}-{container}", "", "deployed-node-1-web-0-app", True),
    ],
)
def test_template_matcher(template: str, cluster: str, tag: str, ours: bool) -> None:
    matcher = TemplateMatcher(TaggingSettings(template=template, cluster=cluster))
    assert matcher.matches(tag) is ours


def test_matcher_follows_the_timestamp_format_and_zone() -> None:
    tagging = TaggingSettings(timestamp_format="%Y-%m-%dT%H:%M:%S%z", timezone="Europe/Paris")
    when = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
    tag = render_tag(tagging, namespace="prod", pod="p", container="c", node="n", when=when)
    assert TemplateMatcher(tagging).matches(tag)
    assert not TemplateMatcher(TaggingSettings()).matches(tag)


def test_inventory_blocker() -> None:
    assert inventory_blocker(None, NOW, 600) == "no_inventory"
    assert inventory_blocker(PASS, NOW, 600) is None
    assert inventory_blocker(PASS, NOW + 551, 600) == "stale_inventory"
