"""Properties of the release decision over generated ledgers and inventories."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.plan import fallback_tag, render_tag
from listener.retention import TagDecision, TemplateMatcher, plan_retention
from pulltag.config import RetentionSettings, TaggingSettings
from pulltag.store import InventoryEntry, InventoryPass, LedgerEntry

HOUR = 3600.0
NOW = 1_800_000_000.0
TAGGING = TaggingSettings(template="{prefix}_{cluster}_{namespace}_{timestamp}", cluster="east")
OTHER_CLUSTER = TaggingSettings(template=TAGGING.template, cluster="west")
IMAGES = ("r.example.com/a", "r.example.com/b")
NAMESPACES = ("prod", "staging")
DIGESTS = tuple("sha256:" + c * 64 for c in "0123456")
OUTCOMES = ("created", "created", "created", "exists", "skipped", "released", "moved", "unsupported")

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
times = st.floats(min_value=NOW - 400 * 24 * HOUR, max_value=NOW)


@st.composite
def tags(draw: st.DrawFn) -> tuple[str, bool]:
    """(tag, ours): rendered from our template, from another cluster's, or made by hand."""
    kind = draw(st.sampled_from(["ours", "ours_fallback", "other_cluster", "hand"]))
    when = datetime.fromtimestamp(draw(times), UTC)
    ns = draw(st.sampled_from(NAMESPACES))
    if kind == "hand":
        return "deployed_" + draw(st.from_regex(r"[a-z_.-]{1,20}", fullmatch=True)), False
    tagging = OTHER_CLUSTER if kind == "other_cluster" else TAGGING
    tag = render_tag(tagging, namespace=ns, pod="p", container="c", node="n", when=when)
    if kind == "ours_fallback":
        tag = fallback_tag(tag, draw(st.sampled_from(DIGESTS)))
    return tag, kind.startswith("ours")


@st.composite
def worlds(
    draw: st.DrawFn,
) -> tuple[list[LedgerEntry], list[InventoryEntry], InventoryPass, RetentionSettings, set[str]]:
    ledger: list[LedgerEntry] = []
    foreign: set[str] = set()
    for _ in range(draw(st.integers(0, 25))):
        tag, ours = draw(tags())
        if not ours:
            foreign.add(tag)
        tagged_at = draw(times)
        ledger.append(
            LedgerEntry(
                image=draw(st.sampled_from(IMAGES)),
                digest=draw(st.sampled_from(DIGESTS)),
                tag=tag,
                namespace=draw(st.sampled_from(NAMESPACES)),
                pod="p",
                node="n",
                pulled_at=tagged_at - draw(st.floats(0, HOUR)),
                tagged_at=tagged_at,
                outcome=draw(st.sampled_from(OUTCOMES)),
            )
        )
    inventory = []
    for _ in range(draw(st.integers(0, 8))):
        first = draw(times)
        inventory.append(
            InventoryEntry(
                image=draw(st.sampled_from(IMAGES)),
                digest=draw(st.sampled_from(DIGESTS)),
                namespace=draw(st.sampled_from(NAMESPACES)),
                pods=1,
                first_seen=first,
                last_seen=draw(st.floats(first, NOW)),
            )
        )
    started = draw(st.floats(NOW - 2 * HOUR, NOW))
    last_pass = InventoryPass(started_at=started, completed_at=started + 1, digests=len(inventory))
    retention = RetentionSettings(
        enabled=True,
        keep_last=draw(st.integers(0, 3)),
        grace_hours=draw(st.sampled_from([0.0, 1.0, 168.0])),
        min_age_hours=draw(st.sampled_from([0.0, 24.0])),
    )
    return ledger, inventory, last_pass, retention, foreign


def decide(
    world: tuple[list[LedgerEntry], list[InventoryEntry], InventoryPass, RetentionSettings, set[str]],
    now: float,
) -> list[TagDecision]:
    ledger, inventory, last_pass, retention, _ = world
    return plan_retention(
        ledger=ledger,
        inventory=inventory,
        last_pass=last_pass,
        tagging=TAGGING,
        retention=retention,
        now=now,
        max_inventory_age=float("inf"),
    )


def released(
    world: tuple[list[LedgerEntry], list[InventoryEntry], InventoryPass, RetentionSettings, set[str]],
    now: float,
) -> set[tuple[str, str]]:
    return {(d.image, d.tag) for d in decide(world, now) if d.action == "release"}


@settings(max_examples=300)
@given(worlds())
def test_never_releases_a_running_digest(
    world: tuple[list[LedgerEntry], list[InventoryEntry], InventoryPass, RetentionSettings, set[str]],
) -> None:
    ledger, inventory, last_pass, retention, _ = world
    decisions = decide(world, NOW + HOUR)
    running = {(i.image, i.digest) for i in inventory if i.last_seen >= last_pass.started_at}
    for d in decisions:
        if d.action == "release":
            assert (d.image, d.digest) not in running
            assert NOW + HOUR - d.created_at >= retention.min_age_hours * HOUR
            assert d.created_at < last_pass.started_at
            # Only tags the ledger says pulltag created, and never one already gone for good.
            mine = [e for e in ledger if (e.image, e.tag, e.outcome) == (d.image, d.tag, "created")]
            assert mine


@settings(max_examples=300)
@given(worlds())
def test_never_releases_a_name_that_does_not_render_from_the_template(
    world: tuple[list[LedgerEntry], list[InventoryEntry], InventoryPass, RetentionSettings, set[str]],
) -> None:
    assert not {tag for _, tag in released(world, NOW + HOUR)} & world[4]


@settings(max_examples=200)
@given(worlds(), st.floats(0, 400 * 24 * HOUR), st.floats(0, 400 * 24 * HOUR))
def test_a_plan_is_monotone_in_time(
    world: tuple[list[LedgerEntry], list[InventoryEntry], InventoryPass, RetentionSettings, set[str]],
    a: float,
    b: float,
) -> None:
    early, late = sorted((NOW + a, NOW + b))
    assert released(world, early) <= released(world, late)


@given(
    st.sampled_from(
        [
            "{prefix}_{namespace}_{timestamp}",
            "{prefix}_{cluster}_{namespace}_{timestamp}",
            "{prefix}.{node}.{pod}.{container}.{timestamp}",
        ]
    ),
    st.sampled_from(["%Y%m%d-%H%M%S", "%Y-%m-%dT%H%M%S", "%s", "%y%j.%H%M%S%f", "%d %b %Y"]),
    labels,
    labels,
    labels,
    st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)),
    st.sampled_from(DIGESTS),
)
def test_every_rendered_tag_is_recognised(
    template: str, fmt: str, namespace: str, pod: str, container: str, node: str, when: datetime, digest: str
) -> None:
    tagging = TaggingSettings(template=template, timestamp_format=fmt, cluster="east")
    tag = render_tag(tagging, namespace=namespace, pod=pod, container=container, node=node, when=when)
    matcher = TemplateMatcher(tagging)
    assert len(tag) >= 128 or matcher.matches(tag)
    suffixed = fallback_tag(tag, digest)
    assert len(tag) >= 128 - 13 or matcher.matches(suffixed)
