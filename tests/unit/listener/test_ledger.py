"""The one decision "is this digest already tagged for this scope", as a table."""

from __future__ import annotations

import pytest

from listener.ledger import ledger_tag, tagged_per_ledger
from listener.plan import TagPlan
from pulltag.store.base import LedgerEntry

from .fakes import MemoryStore
from .work import entry, tag_plan

IMAGE_SCOPE = tag_plan(skip_prefix="deployed_")
NAMESPACE_SCOPE = tag_plan(skip_prefix="deployed_prod_")
EVERY_SCOPE = tag_plan(skip_prefix=None)


@pytest.mark.parametrize(
    ("plan_", "entries", "dry_run", "expected"),
    [
        (IMAGE_SCOPE, [], False, None),
        (IMAGE_SCOPE, [entry("created", "deployed_x_1")], False, "deployed_x_1"),
        (IMAGE_SCOPE, [entry("exists", "deployed_x_1")], False, "deployed_x_1"),
        (IMAGE_SCOPE, [entry("failed", "deployed_x_1")], False, None),
        (IMAGE_SCOPE, [entry("skipped", "deployed_x_1")], False, None),
        (IMAGE_SCOPE, [entry("dry-run", "deployed_x_1")], False, None),
        (IMAGE_SCOPE, [entry("dry-run", "deployed_x_1")], True, "deployed_x_1"),
        (IMAGE_SCOPE, [entry("created", "release-1")], False, None),
        (IMAGE_SCOPE, [entry("failed", "deployed_a"), entry("created", "deployed_b")], False, "deployed_b"),
        # a tag retention released (or found moved) serves nothing: a rollback to the digest tags it again
        (IMAGE_SCOPE, [entry("released", "deployed_x_1"), entry("created", "deployed_x_1")], False, None),
        (IMAGE_SCOPE, [entry("moved", "deployed_x_1"), entry("created", "deployed_x_1")], False, None),
        (
            IMAGE_SCOPE,
            [entry("immutable", "deployed_x_1"), entry("created", "deployed_x_1")],
            False,
            "deployed_x_1",
        ),
        (
            IMAGE_SCOPE,
            [entry("created", "deployed_x_2"), entry("released", "deployed_x_1")],
            False,
            "deployed_x_2",
        ),
        # scope namespace: only this namespace's prefix counts
        (NAMESPACE_SCOPE, [entry("created", "deployed_staging_1", namespace="staging")], False, None),
        (NAMESPACE_SCOPE, [entry("created", "deployed_prod_1")], False, "deployed_prod_1"),
        # scope every: a tag of this very container of this pod, whatever its name
        (EVERY_SCOPE, [entry("created", "anything")], False, "anything"),
        (EVERY_SCOPE, [entry("created", "t", pod="web-1")], False, None),
        (EVERY_SCOPE, [entry("created", "t", namespace="staging")], False, None),
        (EVERY_SCOPE, [entry("created", "t", container="sidecar")], False, None),
        (EVERY_SCOPE, [entry("failed", "t")], False, None),
    ],
)
def test_ledger_tag(plan_: TagPlan, entries: list[LedgerEntry], dry_run: bool, expected: str | None) -> None:
    assert ledger_tag(entries, plan_, dry_run=dry_run) == expected


def test_a_store_that_cannot_answer_says_nothing_is_tagged() -> None:
    store = MemoryStore()
    store.append_ledger(entry("created", "deployed_x_1"))
    assert tagged_per_ledger(store, IMAGE_SCOPE, dry_run=False) == "deployed_x_1"
    store.failing.add("query_ledger")
    assert tagged_per_ledger(store, IMAGE_SCOPE, dry_run=False) is None


def test_scope_every_finds_its_pod_behind_many_newer_entries_of_the_digest() -> None:
    store = MemoryStore()
    store.append_ledger(entry("created", "mine"))
    for i in range(300):  # a DaemonSet's worth of newer entries of the same digest
        store.append_ledger(entry("created", f"other-{i}", pod=f"ds-{i}"))
    assert tagged_per_ledger(store, EVERY_SCOPE, dry_run=False) == "mine"
