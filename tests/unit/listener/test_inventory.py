"""The inventory's decisions over in-memory fakes: what a pod contributes, when a pass completes, what is
written, and the event path's refreshes."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener import inventory as inventory_module
from listener.inventory import Inventory, Tally, running_digests
from listener.kube import KubeError
from listener.metrics import ListenerMetrics
from pulltag.config import NamespaceSettings, Settings
from pulltag.store import InventoryEntry, InventoryPass

from .factories import DIGEST, OTHER_DIGEST
from .fakes import MemoryKube, MemoryStore

Obj = dict[str, Any]
NGINX = "docker.io/library/nginx"
T0 = 1_800_000_000.0


def status(name: str, image_id: str | None, state: str = "running") -> Obj:
    cs: Obj = {"name": name, "image": "x", "state": {state: {}}}
    if image_id is not None:
        cs["imageID"] = image_id
    return cs


def pod(
    name: str = "web-0",
    namespace: str = "prod",
    phase: str = "Running",
    containers: list[Obj] | None = None,
    **statuses: list[Obj],
) -> Obj:
    body: Obj = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "status": {"phase": phase, "containerStatuses": containers or [status("app", f"{NGINX}@{DIGEST}")]},
    }
    body["status"].update(statuses)
    return body


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0  # every reading a second later: times show which reading they came from
        return self.now


def make(
    pods: list[Obj] | None = None, **namespaces: Any
) -> tuple[Inventory, MemoryStore, MemoryKube, Clock]:
    store, kube, clock = MemoryStore(), MemoryKube(pods), Clock()
    settings = Settings(namespaces=NamespaceSettings(**namespaces)) if namespaces else Settings()
    return Inventory(settings, store, kube, ListenerMetrics(), clock=clock), store, kube, clock


# --- what a pod contributes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image_id", "expected"),
    [
        (f"{NGINX}@{DIGEST}", [(NGINX, DIGEST)]),
        (f"docker-pullable://nginx@{DIGEST}", [(NGINX, DIGEST)]),  # Docker's familiar form
        (f"registry-1.docker.io/library/nginx@{DIGEST}", [(NGINX, DIGEST)]),  # a Docker Hub alias
        (f"Harbor.Example.com:443/team/app:1.0@{DIGEST}", [("harbor.example.com/team/app", DIGEST)]),
        (DIGEST, []),  # a bare id names no repository
        ("docker://" + DIGEST, []),
        ("ab" * 32, []),
        ("", []),
        ("not an image id", []),
        (None, []),
    ],
)
def test_the_repository_and_digest_of_an_image_id(
    image_id: str | None, expected: list[tuple[str, str]]
) -> None:
    assert list(running_digests(pod(containers=[status("app", image_id)]))) == expected


def test_every_container_kind_counts_whatever_its_own_state() -> None:
    running = pod(
        containers=[status("app", f"{NGINX}@{DIGEST}")],
        initContainerStatuses=[status("init", f"reg.local:5000/init@{OTHER_DIGEST}", "terminated")],
        ephemeralContainerStatuses=[status("debug", f"docker.io/library/busybox@{DIGEST}")],
    )
    assert set(running_digests(running)) == {
        (NGINX, DIGEST),
        ("reg.local:5000/init", OTHER_DIGEST),
        ("docker.io/library/busybox", DIGEST),
    }


@pytest.mark.parametrize(
    ("phase", "state", "counts"),
    [
        ("Running", "running", True),
        ("Running", "waiting", True),  # a restarting container of a running pod still needs its image
        ("Pending", "running", True),  # an init container running
        ("Pending", "waiting", False),
        ("Succeeded", "terminated", False),
        ("Failed", "terminated", False),
        ("Unknown", "running", False),
    ],
)
def test_only_running_pods_count(phase: str, state: str, counts: bool) -> None:
    p = pod(phase=phase, containers=[status("app", f"{NGINX}@{DIGEST}", state)])
    assert bool(list(running_digests(p))) is counts


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=15,
)


@given(
    st.dictionaries(
        st.sampled_from(["metadata", "status", "spec"]),
        _json | st.fixed_dictionaries({"phase": _json, "containerStatuses": _json}),
    )
)
def test_any_pod_shape_gives_digests_or_nothing_never_an_error(body: Obj) -> None:
    for image, digest in running_digests(body):
        assert "/" in image and digest.startswith("sha256:")


def test_a_pod_counts_once_per_digest_and_namespace() -> None:
    tally = Tally()
    two_containers = pod(containers=[status("a", f"{NGINX}@{DIGEST}"), status("b", f"{NGINX}@{DIGEST}")])
    tally.add_pod(two_containers, "prod", T0)
    tally.add_pod(pod(name="web-1"), "prod", T0 + 5)
    tally.add_pod(pod(namespace="dev"), "dev", T0 + 6)
    assert {(s.namespace, s.pods, s.seen_at) for s in tally.sightings()} == {
        ("prod", 2, T0 + 5),
        ("dev", 1, T0 + 6),
    }
    assert tally.digests() == 1


# --- one pass ---------------------------------------------------------------------------------------------
def test_a_complete_pass_records_what_runs_and_completes() -> None:
    inv, store, _, _ = make(
        [pod(), pod(name="web-1"), pod(namespace="dev"), pod(name="done", phase="Succeeded")]
    )
    done = inv.run_once()
    assert done == InventoryPass(T0 + 1, T0 + 6, 1)  # started before the list (4 pods), completed after it
    assert store.last_pass == done
    assert {(e.namespace, e.pods) for e in store.inventory()} == {("prod", 2), ("dev", 1)}
    # every sighting is no earlier than the pass's start: "runs now" is last_seen >= started_at
    assert all(e.last_seen >= done.started_at for e in store.inventory())
    assert inv.metrics.value("pulltag_inventory_passes_total", {"outcome": "complete"}) == 1
    assert inv.metrics.value("pulltag_inventory_digests") == 1


def test_namespaces_out_of_scope_are_not_inventoried() -> None:
    inv, store, _, _ = make(
        [pod(), pod(namespace="kube-system"), pod(namespace="team-a")], exclude=("kube-system", "team-*")
    )
    inv.run_once()
    assert [e.namespace for e in store.inventory()] == ["prod"]


class FailingList(MemoryKube):
    """Lists `good` pods, then fails as the API server does mid-list (an expired continue token)."""

    def __init__(self, pods: list[Obj], good: int, status: int = 410) -> None:
        super().__init__(pods)
        self.good, self.status = good, status

    def list_pods(self, namespace: str | None = None, limit: int = 500) -> Iterator[Obj]:
        for i, (_, body) in enumerate(list(self.pods.items())):
            if i == self.good:
                raise KubeError("GET /api/v1/pods: HTTP 410 (scripted)", status=self.status)
            yield copy.deepcopy(body)


@pytest.mark.parametrize("status", [410, 500, None])
def test_a_list_error_midway_completes_no_pass(status: int | None) -> None:
    store = MemoryStore()
    store.complete_inventory_pass(InventoryPass(T0 - 600, T0 - 590, 9))
    kube = FailingList(
        [pod(name=f"web-{i}") for i in range(3)] + [pod(namespace="dev")], good=2, status=status
    )
    inv = Inventory(Settings(), store, kube, ListenerMetrics(), clock=Clock())
    assert inv.run_once() is None
    assert store.last_pass == InventoryPass(T0 - 600, T0 - 590, 9)  # the last complete pass stays the last
    # what it did see is written (a sighting only protects), but the namespace after the error is unknown
    assert [(e.namespace, e.pods) for e in store.inventory()] == [("prod", 2)]
    assert inv.metrics.value("pulltag_inventory_passes_total", {"outcome": "list_error"}) == 1
    assert inv.metrics.value("pulltag_inventory_passes_total", {"outcome": "complete"}) == 0


@pytest.mark.parametrize("method", ["record_sightings", "complete_inventory_pass"])
def test_a_store_error_completes_no_pass(method: str) -> None:
    inv, store, _, _ = make([pod()])
    store.failing.add(method)
    assert inv.run_once() is None
    assert store.last_pass is None
    assert inv.last_pass is None
    assert inv.metrics.value("pulltag_inventory_passes_total", {"outcome": "store_error"}) == 1


def test_a_pass_stopped_midway_completes_nothing() -> None:
    inv, store, _, _ = make([pod()])
    inv._stop.set()
    assert inv.run_once() is None
    assert store.last_pass is None
    assert inv.metrics.value("pulltag_inventory_passes_total", {"outcome": "stopped"}) == 1


def test_a_complete_pass_prunes_entries_not_seen_within_the_horizon() -> None:
    inv, store, _, _clock = make([pod()])
    old = InventoryEntry("reg.local:5000/gone", DIGEST, "prod", 1, 1.0, T0 - inv.prune_after - 10)
    recent = InventoryEntry("reg.local:5000/recent", DIGEST, "prod", 1, 1.0, T0 - inv.prune_after + 10)
    store.entries = {(e.image, e.digest, e.namespace): e for e in (old, recent)}
    inv.run_once()
    assert {e.image for e in store.inventory()} == {NGINX, "reg.local:5000/recent"}


def test_a_failed_pass_prunes_nothing() -> None:
    store = MemoryStore()
    kube = FailingList([pod()], good=0)
    inv = Inventory(Settings(), store, kube, ListenerMetrics(), clock=Clock())
    store.entries = {
        ("reg.local:5000/gone", DIGEST, "prod"): InventoryEntry(
            "reg.local:5000/gone", DIGEST, "prod", 1, 1.0, 2.0
        )
    }
    inv.run_once()
    assert len(store.inventory()) == 1


def test_sightings_are_written_in_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory_module, "WRITE_BATCH", 2)
    pods = [pod(namespace=f"ns-{i}") for i in range(5)]
    inv, store, _, _ = make(pods)
    sizes: list[int] = []
    record = store.record_sightings
    store.record_sightings = lambda batch: (sizes.append(len(batch)), record(batch))[1]  # type: ignore[method-assign]
    inv.run_once()
    assert sizes == [2, 2, 1]
    assert len(store.inventory()) == 5


# --- age and the schedule ---------------------------------------------------------------------------------
def test_age_is_infinite_until_a_pass_is_known_then_counts_from_its_end() -> None:
    inv, _, _, clock = make([pod()])
    assert inv.age_seconds() == math.inf
    done = inv.run_once()
    assert done is not None
    clock.now = done.completed_at + 99.0
    assert inv.age_seconds() == 100.0  # the clock's next reading is one second later


@pytest.mark.parametrize(
    ("last_completed", "expected"),
    [
        (None, 0.0),
        (T0 - 100.0, 500.0),
        (T0 - 5000.0, 0.0),
        (T0 + 10_000.0, 600.0),
    ],  # a clock behind: at most one interval
)
def test_a_new_leader_continues_the_stores_schedule(last_completed: float | None, expected: float) -> None:
    inv, store, _, clock = make()
    clock.now = T0 - 1.0
    if last_completed is not None:
        store.complete_inventory_pass(InventoryPass(last_completed - 5, last_completed, 3))
    assert inv._first_delay(600.0) == expected
    assert inv.last_pass == store.last_pass


def test_an_unreadable_store_starts_a_pass_at_once() -> None:
    inv, store, _, _ = make()
    store.failing.add("last_inventory_pass")
    assert inv._first_delay(600.0) == 0.0


# --- refreshes from the event path -------------------------------------------------------------------------
def test_a_refresh_moves_last_seen_and_keeps_the_count() -> None:
    inv, store, _, clock = make([pod(), pod(name="web-1")])
    inv.run_once()
    inv.refresh("registry-1.docker.io/nginx", DIGEST, "prod")  # any spelling of the image
    assert store.inventory()[0].last_seen < clock.now  # nothing written before the flush
    assert inv.flush() == 1
    (entry,) = store.inventory()
    assert (entry.pods, entry.last_seen) == (2, clock.now)


def test_a_refresh_out_of_scope_is_ignored() -> None:
    inv, store, _, _ = make()
    inv.refresh(NGINX, DIGEST, "kube-system")
    assert inv.flush() == 0
    assert store.inventory() == []


def test_refreshes_survive_a_store_error_until_the_next_flush() -> None:
    inv, store, _, _ = make()
    inv.refresh(NGINX, DIGEST, "prod")
    store.failing.add("record_sightings")
    assert inv.flush() == 0
    store.failing.clear()
    assert inv.flush() == 1
    assert [(e.image, e.pods) for e in store.inventory()] == [(NGINX, 0)]


def test_waiting_refreshes_are_bounded_and_the_rest_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory_module, "MAX_PENDING_REFRESHES", 3)
    inv, _store, _, _ = make()
    for i in range(5):
        inv.refresh(NGINX, DIGEST, f"ns-{i}")
    inv.refresh(NGINX, DIGEST, "ns-0")  # one already waiting is refreshed, not dropped
    assert inv.metrics.value("pulltag_inventory_refreshes_dropped_total") == 2
    assert inv.flush() == 3


def test_the_prune_horizon_outlasts_a_long_retention_grace() -> None:
    """An entry pruned while retention's grace still needs it would read as "never ran"."""
    from dataclasses import replace

    from listener.inventory import PRUNE_AFTER_SECONDS, Inventory
    from listener.metrics import ListenerMetrics
    from pulltag.config import RetentionSettings, Settings

    long_grace = replace(Settings(), retention=RetentionSettings(grace_hours=24 * 200))
    inventory = Inventory(long_grace, None, None, ListenerMetrics())  # type: ignore[arg-type]
    assert inventory.prune_after == 2 * 200 * 24 * 3600.0
    assert Inventory(Settings(), None, None, ListenerMetrics()).prune_after == PRUNE_AFTER_SECONDS  # type: ignore[arg-type]
