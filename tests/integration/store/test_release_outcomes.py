"""The release outcomes retention records ("released", "unsupported", "moved", "immutable") round-trip
through both backends and are found by the ledger's filters, like every other outcome."""

from __future__ import annotations

import pytest

from pulltag.store import OUTCOMES, LedgerEntry, Store

DIGEST = "sha256:" + "c" * 64


@pytest.mark.parametrize("outcome", ["released", "unsupported", "moved", "immutable"])
def test_a_release_outcome_roundtrips(store: Store, outcome: str) -> None:
    assert outcome in OUTCOMES
    entry = LedgerEntry(
        image="registry.example.com/team/app",
        digest=DIGEST,
        tag="deployed_prod_20260101-000000",
        namespace="prod",
        pod="",
        node="",
        pulled_at=100.0,
        tagged_at=200.0,
        outcome=outcome,  # type: ignore[arg-type]
        reason="retention",
    )
    store.append_ledger(entry)
    assert store.query_ledger(image=entry.image, digest=DIGEST, namespace="prod") == [entry]
