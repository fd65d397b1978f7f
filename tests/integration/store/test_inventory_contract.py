"""The inventory part of the store contract, on both backends (the `store` fixture is parametrized)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulltag.store import InventoryEntry, InventoryPass, Sighting, Store
from pulltag.store.base import merge_sighting
from tests.integration.store.conftest import StoreFactory

T0 = 1_764_000_000.123456  # a time with sub-millisecond digits: must round-trip exactly
APP = "harbor.example.com/team/app"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def seen(pods: int, at: float, *, image: str = APP, digest: str = D1, namespace: str = "prod") -> Sighting:
    return Sighting(image=image, digest=digest, namespace=namespace, pods=pods, seen_at=at)


def test_empty_store_has_no_inventory_and_no_pass(store: Store) -> None:
    assert store.inventory() == []
    assert store.last_inventory_pass() is None
    assert store.prune_inventory(T0) == 0


def test_first_sighting_creates_an_entry(store: Store) -> None:
    store.record_sightings([seen(3, T0)])
    assert store.inventory() == [InventoryEntry(APP, D1, "prod", 3, T0, T0)]


def test_sightings_widen_first_and_last_seen_and_keep_the_latest_count(store: Store) -> None:
    store.record_sightings([seen(3, T0)])
    store.record_sightings([seen(5, T0 + 60)])
    store.record_sightings([seen(2, T0 - 60)])  # a late writer with an older time: still widens first_seen
    assert store.inventory() == [InventoryEntry(APP, D1, "prod", 2, T0 - 60, T0 + 60)]


def test_a_refresh_with_zero_pods_keeps_the_count(store: Store) -> None:
    store.record_sightings([seen(4, T0)])
    store.record_sightings([seen(0, T0 + 30)])
    assert store.inventory() == [InventoryEntry(APP, D1, "prod", 4, T0, T0 + 30)]


def test_a_refresh_of_an_unknown_digest_counts_zero_pods(store: Store) -> None:
    store.record_sightings([seen(0, T0)])
    assert store.inventory() == [InventoryEntry(APP, D1, "prod", 0, T0, T0)]


def test_entries_are_per_image_digest_and_namespace(store: Store) -> None:
    store.record_sightings(
        [
            seen(1, T0),
            seen(2, T0, namespace="dev"),
            seen(3, T0, digest=D2),
            seen(4, T0, image="registry.local:5000/other"),
        ]
    )
    got = {(e.image, e.digest, e.namespace): e.pods for e in store.inventory()}
    assert got == {
        (APP, D1, "prod"): 1,
        (APP, D1, "dev"): 2,
        (APP, D2, "prod"): 3,
        ("registry.local:5000/other", D1, "prod"): 4,
    }
    assert store.inventory() == sorted(store.inventory(), key=lambda e: (e.image, e.digest, e.namespace))


def test_inventory_filters(store: Store) -> None:
    store.record_sightings(
        [seen(1, T0), seen(2, T0, namespace="dev"), seen(3, T0, digest=D2), seen(4, T0, image="reg.x/other")]
    )
    assert {e.pods for e in store.inventory(namespace="dev")} == {2}
    assert {e.pods for e in store.inventory(digest=D2)} == {3}
    assert {e.pods for e in store.inventory(image=APP)} == {1, 2, 3}
    assert {e.pods for e in store.inventory(image=APP, namespace="prod", digest=D1)} == {1}
    assert store.inventory(namespace="nowhere") == []


def test_images_are_stored_under_their_canonical_name(store: Store) -> None:
    # the same spelling the ledger uses, so an inventory entry and a ledger entry of one image meet
    store.record_sightings(
        [seen(1, T0, image="Harbor.Example.com:443/team/app"), seen(1, T0, image="docker.io/nginx")]
    )
    store.record_sightings([seen(2, T0, image="registry-1.docker.io/nginx")])
    images = {e.image: e.pods for e in store.inventory()}
    assert images == {"harbor.example.com/team/app": 1, "docker.io/library/nginx": 2}
    assert len(store.inventory(image="HARBOR.example.com:443/team/app")) == 1


def test_unicode_namespace_roundtrips(store: Store) -> None:
    store.record_sightings([seen(1, T0, namespace="équipe-😀")])
    assert store.inventory(namespace="équipe-😀")[0].namespace == "équipe-😀"


def test_a_batch_with_the_same_key_twice_merges_in_order(store: Store) -> None:
    store.record_sightings([seen(2, T0), seen(0, T0 + 1), seen(7, T0 - 1)])
    assert store.inventory() == [InventoryEntry(APP, D1, "prod", 7, T0 - 1, T0 + 1)]


def test_recording_nothing_is_harmless(store: Store) -> None:
    store.record_sightings([])
    assert store.inventory() == []


def test_a_negative_count_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="pods"):
        store.record_sightings([seen(-1, T0)])
    assert store.inventory() == []


def test_the_last_complete_pass_replaces_the_previous(store: Store) -> None:
    store.complete_inventory_pass(InventoryPass(T0, T0 + 2.5, 7))
    assert store.last_inventory_pass() == InventoryPass(T0, T0 + 2.5, 7)
    store.complete_inventory_pass(InventoryPass(T0 + 600, T0 + 601, 9))
    assert store.last_inventory_pass() == InventoryPass(T0 + 600, T0 + 601, 9)


def test_the_inventory_survives_a_new_store_object(make_store: StoreFactory) -> None:
    # a restart or a leader change continues from the store
    make_store().record_sightings([seen(3, T0)])
    make_store().complete_inventory_pass(InventoryPass(T0, T0 + 1, 1))
    other = make_store()
    assert other.inventory() == [InventoryEntry(APP, D1, "prod", 3, T0, T0)]
    assert other.last_inventory_pass() == InventoryPass(T0, T0 + 1, 1)


def test_prune_drops_only_entries_not_seen_since(store: Store) -> None:
    store.record_sightings([seen(1, T0 - 100), seen(2, T0, digest=D2), seen(3, T0 + 100, namespace="dev")])
    assert store.prune_inventory(T0) == 1  # strictly before: the entry seen at T0 stays
    assert {(e.digest, e.namespace) for e in store.inventory()} == {(D2, "prod"), (D1, "dev")}
    assert store.prune_inventory(T0) == 0
    # a pruned digest seen again starts afresh
    store.record_sightings([seen(5, T0 + 200)])
    assert store.inventory(namespace="prod", digest=D1) == [
        InventoryEntry(APP, D1, "prod", 5, T0 + 200, T0 + 200)
    ]


def test_prune_uses_last_seen_not_first_seen(store: Store) -> None:
    store.record_sightings([seen(1, T0 - 1000), seen(1, T0 + 10)])
    assert store.prune_inventory(T0) == 0
    assert len(store.inventory()) == 1


_times = st.floats(min_value=1.0e9, max_value=2.0e9, allow_nan=False)
_sightings = st.lists(
    st.builds(
        seen,
        st.integers(min_value=0, max_value=50),
        _times,
        digest=st.sampled_from([D1, D2]),
        namespace=st.sampled_from(["prod", "dev"]),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(_sightings, max_size=4))
def test_every_backend_computes_merge_sighting(
    make_store: StoreFactory, batches: list[list[Sighting]]
) -> None:
    store = make_store()
    store.prune_inventory(float("inf"))  # hypothesis reuses the fixture: start empty
    model: dict[tuple[str, str, str], InventoryEntry] = {}
    for batch in batches:
        store.record_sightings(batch)
        for s in batch:
            key = (s.image, s.digest, s.namespace)
            model[key] = merge_sighting(model.get(key), s)
    assert store.inventory() == [model[k] for k in sorted(model)]
