"""`pulltag inventory`'s pure view: what runs now, grouped per digest, and which tags protect it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulltag.inventory_report import group, protecting_tags, running_now
from pulltag.store import InventoryEntry, InventoryPass, LedgerEntry

APP = "registry.local:5000/team/app"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
PASS = InventoryPass(started_at=1000.0, completed_at=1010.0, digests=2)


def inv(
    namespace: str = "prod", digest: str = D1, pods: int = 1, first: float = 500.0, last: float = 1005.0
) -> InventoryEntry:
    return InventoryEntry(APP, digest, namespace, pods, first, last)


def led(tag: str, outcome: str, at: float) -> LedgerEntry:
    return LedgerEntry(APP, D1, tag, "prod", "p", "n", at, at, outcome)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("last_seen", "last_pass", "runs"),
    [
        (1005.0, PASS, True),
        (1000.0, PASS, True),  # seen at the very start of the pass
        (999.9, PASS, False),  # seen before the last complete pass began: not running now
        (1005.0, None, False),  # no complete pass: nothing is known to run
    ],
)
def test_running_now_is_seen_since_the_last_complete_pass_began(
    last_seen: float, last_pass: InventoryPass | None, runs: bool
) -> None:
    assert bool(running_now([inv(last=last_seen)], last_pass)) is runs


@pytest.mark.parametrize(
    ("entries", "tags"),
    [
        ([], ()),
        ([led("a", "created", 1)], ("a",)),
        ([led("a", "skipped", 2), led("b", "failed", 1)], ()),  # pulltag made neither
        ([led("a", "exists", 2), led("a", "created", 1)], ("a",)),
        ([led("a", "released", 3), led("a", "created", 1), led("b", "created", 2)], ("b",)),
        ([led("a", "created", 4), led("a", "released", 3), led("a", "created", 1)], ("a",)),  # made again
    ],
)
def test_protecting_tags(entries: list[LedgerEntry], tags: tuple[str, ...]) -> None:
    assert protecting_tags(sorted(entries, key=lambda e: -e.tagged_at)) == tags


def test_group_sums_pods_and_spans_times_over_namespaces() -> None:
    rows = group(
        [inv("prod", pods=3, first=100, last=1005), inv("dev", pods=2, first=200, last=1007), inv(digest=D2)],
        lambda image, digest: [led("deployed_1", "created", 1)] if digest == D1 else [],
    )
    assert [(r.digest, r.namespaces, r.pods, r.first_seen, r.last_seen, r.tags) for r in rows] == [
        (D1, ("dev", "prod"), 5, 100, 1007, ("deployed_1",)),
        (D2, ("prod",), 1, 500, 1005, ()),
    ]
    assert (rows[0].registry, rows[0].repository, rows[0].image) == ("registry.local:5000", "team/app", APP)


@given(
    st.lists(
        st.builds(
            inv,
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([D1, D2]),
            st.integers(0, 9),
            st.floats(0, 1e9),
            st.floats(0, 1e9),
        ),
        max_size=10,
    )
)
def test_group_keeps_every_pod_and_namespace(entries: list[Any]) -> None:
    rows = group(entries, lambda image, digest: [])
    assert sum(r.pods for r in rows) == sum(e.pods for e in entries)
    assert {(r.digest, ns) for r in rows for ns in r.namespaces} == {(e.digest, e.namespace) for e in entries}
