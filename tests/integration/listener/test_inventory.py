"""The inventory of running digests and backfill, in the test world: the fake API server (real HTTP,
pagination, continue tokens, compaction), a real registry and a real store."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import pytest

from listener.inventory import Inventory
from listener.kube import KubeClient, load_config
from listener.metrics import ListenerMetrics
from pulltag.config import TaggingSettings
from pulltag.images import canonical_image_name
from pulltag.store import InventoryPass, LedgerEntry, Store
from tests.harness.kubeapi import FakeKubeAPI
from tests.integration.listener.helpers import Env, now_rfc3339, wait_for

Obj = dict[str, Any]
STARTED = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=40)  # long before install


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _running_pods(env: Env, count: int, *, annotate: bool) -> tuple[str, str]:
    """`count` running pods of one new image; (canonical image name, digest)."""
    repository, digest, image = env.image()
    for i in range(count):
        env.run(env.pod(f"old-{i}", image, annotate=annotate), digest, started=_stamp(STARTED))
    return canonical_image_name(f"{env.registry.host}/{repository}"), digest


def _created(env: Env, digest: str, url: str) -> list[LedgerEntry]:
    return [e for e in env.ledger(digest=digest, url=url) if e.outcome == "created"]


# --- backfill ---------------------------------------------------------------------------------------------
def test_backfill_tags_a_pod_started_before_install(env: Env, store_url: str) -> None:
    repository, digest, image = env.image()
    # Created and running before pulltag was installed: never admitted, no annotation, no Pulled event.
    env.run(env.pod("legacy", image, annotate=False), digest, started=_stamp(STARTED))
    settings = env.settings(store_url, TaggingSettings(backfill=True), catch_up=True)
    running = env.start_listener(settings)
    wait_for(lambda: _created(env, digest, store_url), what="the backfilled tag in the ledger")
    tag = f"deployed_apps_{STARTED:%Y%m%d-%H%M%S}"  # tag time = the container's startedAt
    assert env.tags_on(repository, digest) == [tag]
    (created,) = _created(env, digest, store_url)
    assert (created.reason, created.pod, created.pulled_at) == ("backfill", "legacy", STARTED.timestamp())
    wait_for(lambda: running.tags("created", env.registry.host) == 1, what="the tags metric")


def test_without_backfill_a_pod_started_before_install_is_not_tagged(env: Env, store_url: str) -> None:
    repository, digest, image = env.image()
    env.run(env.pod("legacy", image, annotate=False), digest, started=_stamp(STARTED))
    # and an admitted pod, so that the pass is seen to have run and tagged what it should
    admitted_repo, admitted_digest, admitted_image = env.image()
    env.run(env.pod("admitted", admitted_image), admitted_digest)
    running = env.start_listener(env.settings(store_url, catch_up=True))
    wait_for(lambda: env.tags_on(admitted_repo, admitted_digest), what="the admitted pod's tag")
    run = running.listener.current
    assert run is not None
    wait_for(lambda: run.reconciler.passes >= 1 and run.tagger.queue.idle(), what="the catch-up pass")
    assert env.tags_on(repository, digest) == []
    assert env.ledger(digest=digest, url=store_url) == []


# --- the inventory in a running listener ------------------------------------------------------------------
def test_the_leader_inventories_every_running_pod_admitted_or_not(env: Env, store_url: str) -> None:
    legacy_image, legacy_digest = _running_pods(env, 3, annotate=False)
    repository, digest, image = env.image()
    admitted = env.pod("web", image)
    env.run(admitted, digest)
    running = env.start_listener(env.settings(store_url))
    store = running.store
    wait_for(lambda: store.last_inventory_pass() is not None, what="a complete inventory pass")
    done = store.last_inventory_pass()
    assert done is not None and done.digests == 2
    entries = {(e.image, e.digest, e.namespace): e for e in store.inventory()}
    app = canonical_image_name(f"{env.registry.host}/{repository}")
    assert set(entries) == {(legacy_image, legacy_digest, "apps"), (app, digest, "apps")}
    assert entries[(legacy_image, legacy_digest, "apps")].pods == 3
    assert all(e.last_seen >= done.started_at for e in entries.values())  # running now
    wait_for(lambda: running.metrics.value("pulltag_inventory_digests") == 2, what="the digests gauge")
    assert 0 <= running.metrics.value("pulltag_inventory_age_seconds") < 3600


def test_an_already_present_pull_refreshes_last_seen(env: Env, store_url: str) -> None:
    _repository, digest, image = env.image()
    pod = env.pod("web", image)
    env.run(pod, digest)
    running = env.start_listener(env.settings(store_url, inventory_interval_seconds=3600))
    store = running.store
    wait_for(lambda: store.inventory(digest=digest), what="the first pass's entry")
    (before,) = store.inventory(digest=digest)
    wait_for(
        lambda: running.listener.current is not None and running.listener.current.informer.synced.is_set()
    )
    env.pulled(pod, message=f'Container image "{image}" already present on machine', when=now_rfc3339())

    def refreshed() -> bool:
        (entry,) = store.inventory(digest=digest)
        return entry.last_seen > before.last_seen

    wait_for(refreshed, what="last-seen refreshed by the Pulled event")
    (after,) = store.inventory(digest=digest)
    assert (after.pods, after.first_seen) == (before.pods, before.first_seen)  # the count stays the pass's


# --- list errors: no pass completes -----------------------------------------------------------------------
class CompactingBetweenPages:
    """The real client, with the API server compacted once the first page is read: the next page's
    continue token has expired (410), as on a busy cluster whose list takes too long."""

    def __init__(self, kube: KubeClient, api: FakeKubeAPI) -> None:
        self.kube, self.api = kube, api

    def list_pods(self, namespace: str | None = None, limit: int = 500) -> Iterator[Obj]:
        for i, pod in enumerate(self.kube.list_pods(namespace, limit)):
            yield pod
            if i == limit - 1:
                # a write after the list's resourceVersion, then a compaction past it
                self.api.create("namespaces", {"metadata": {"name": "churn"}})
                self.api.compact()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)


class GoneBetweenPages(CompactingBetweenPages):
    """The real client, with the API server gone once the first page is read (a crashed or partitioned
    API server: the next page is never answered)."""

    def list_pods(self, namespace: str | None = None, limit: int = 500) -> Iterator[Obj]:
        for i, pod in enumerate(self.kube.list_pods(namespace, limit)):
            yield pod
            if i == limit - 1:
                self.api.stop()


def _inventory(env: Env, store: Store, kube: Any) -> Inventory:
    return Inventory(env.settings(store.url), store, kube, ListenerMetrics(), page_size=2)


def _previous_pass(store: Store) -> InventoryPass:
    done = InventoryPass(1_700_000_000.0, 1_700_000_001.0, 7)
    store.complete_inventory_pass(done)
    return done


def test_an_api_500_in_the_middle_of_the_list_completes_no_pass(env: Env, store_url: str) -> None:
    _running_pods(env, 5, annotate=False)
    store = env.open_store(store_url)
    previous = _previous_pass(store)
    inventory = _inventory(env, store, env.kube())
    env.api.fail_requests(count=1, status=500, path_contains="continue=")  # the second page fails
    assert inventory.run_once() is None
    assert store.last_inventory_pass() == previous
    assert [e.pods for e in store.inventory()] == [2]  # the first page was seen, and only that
    assert inventory.metrics.value("pulltag_inventory_passes_total", {"outcome": "list_error"}) == 1
    assert inventory.run_once() is not None  # the fault is gone: the next pass completes
    assert [e.pods for e in store.inventory()] == [5]
    store.close()


def test_an_expired_continue_token_completes_no_pass(env: Env, store_url: str) -> None:
    _running_pods(env, 5, annotate=False)
    store = env.open_store(store_url)
    previous = _previous_pass(store)
    inventory = _inventory(env, store, CompactingBetweenPages(env.kube(), env.api))
    assert inventory.run_once() is None
    assert store.last_inventory_pass() == previous
    assert inventory.metrics.value("pulltag_inventory_passes_total", {"outcome": "list_error"}) == 1
    store.close()


def test_an_api_server_gone_in_the_middle_of_the_list_completes_no_pass(env: Env, store_url: str) -> None:
    _running_pods(env, 5, annotate=False)
    store = env.open_store(store_url)
    previous = _previous_pass(store)
    inventory = _inventory(
        env, store, GoneBetweenPages(KubeClient(load_config(env.kubeconfig), request_timeout=2), env.api)
    )
    try:
        assert inventory.run_once() is None
    finally:
        env.api.restart()
    assert store.last_inventory_pass() == previous
    assert inventory.metrics.value("pulltag_inventory_passes_total", {"outcome": "list_error"}) == 1
    store.close()


@pytest.mark.parametrize("count", [1, 5])
def test_a_pass_over_pages_counts_each_pod_once(env: Env, store_url: str, count: int) -> None:
    image, digest = _running_pods(env, count, annotate=False)
    store = env.open_store(store_url)
    done = _inventory(env, store, env.kube()).run_once()
    assert done is not None and done.digests == 1
    assert [(e.image, e.digest, e.pods) for e in store.inventory()] == [(image, digest, count)]
    store.close()


# --- the clock ----------------------------------------------------------------------------------------------
def test_the_listeners_clock_drives_the_ledger_and_the_inventory(env: Env, store_url: str) -> None:
    from listener.main import Listener

    repository, digest, image = env.image()
    pod = env.pod("web", image)
    env.run(pod, digest)
    simulated = 2_000_000_000.0  # 2033: far from the wall clock
    store = env.open_store(store_url)
    listener = Listener(
        env.settings(store_url), env.kube(), store, ListenerMetrics(), clock=lambda: simulated
    )
    listener.start()
    try:
        env.pulled(pod)
        wait_for(lambda: _created(env, digest, store_url), what="the tag in the ledger")
        wait_for(lambda: store.last_inventory_pass() is not None, what="an inventory pass")
        (created,) = _created(env, digest, store_url)
        assert env.tags_on(repository, digest)
        assert created.tagged_at == simulated
        assert store.last_inventory_pass() == InventoryPass(simulated, simulated, 1)
        assert [e.last_seen for e in store.inventory()] == [simulated]
        wait_for(
            lambda: listener.metrics.value("pulltag_inventory_age_seconds") == 0.0, what="age 0 by the clock"
        )
    finally:
        listener.stop(5.0)
        store.close()


def test_a_new_leader_continues_from_the_store(env: Env, store_url: str) -> None:
    image, digest = _running_pods(env, 2, annotate=False)
    first = env.start_listener(env.settings(store_url, inventory_interval_seconds=3600))
    wait_for(lambda: first.store.last_inventory_pass() is not None, what="the first leader's pass")
    done = first.store.last_inventory_pass()
    assert done is not None
    (before,) = first.store.inventory()
    first.stop()
    second = env.start_listener(env.settings(store_url, inventory_interval_seconds=0.5))
    run = second.listener.current
    assert run is not None
    wait_for(lambda: run.inventory.last_pass is not None, what="the last pass read from the store")
    assert second.metrics.value("pulltag_inventory_age_seconds") < 3600  # known at once, not +Inf

    def newer_pass() -> bool:
        last = second.store.last_inventory_pass()
        return last is not None and last.started_at > done.completed_at

    wait_for(newer_pass, what="the new leader's own pass")
    (after,) = second.store.inventory()
    assert (after.image, after.digest, after.pods) == (image, digest, 2)
    assert after.first_seen == before.first_seen  # the history goes on from the store
    assert after.last_seen > before.last_seen


def test_a_standby_replica_reports_no_inventory_age(env: Env, store_url: str) -> None:
    from listener.main import Listener

    store = env.open_store(store_url)
    standby = Listener(env.settings(store_url), env.kube(), store, ListenerMetrics())  # never started
    assert math.isnan(standby.metrics.value("pulltag_inventory_age_seconds"))
    store.close()
