"""The inventory of running digests and backfill, in the test world: the fake API server (real HTTP,
pagination, continue tokens, compaction), a real registry and a real store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from listener.inventory import Inventory
from listener.kube import KubeClient
from listener.metrics import ListenerMetrics
from pulltag.config import TaggingSettings
from pulltag.images import canonical_image_name
from pulltag.store import InventoryPass, Store
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


# --- backfill ---------------------------------------------------------------------------------------------
def test_backfill_tags_a_pod_started_before_install(env: Env, store_url: str) -> None:
    repository, digest, image = env.image()
    # Created and running before pulltag was installed: never admitted, no annotation, no Pulled event.
    env.run(env.pod("legacy", image, annotate=False), digest, started=_stamp(STARTED))
    settings = env.settings(store_url, TaggingSettings(backfill=True), catch_up=True)
    running = env.start_listener(settings)
    wait_for(lambda: env.tags_on(repository, digest), what="the backfilled tag")
    assert env.tags_on(repository, digest) == [
        f"deployed_apps_{STARTED:%Y%m%d-%H%M%S}"
    ]  # tag time = startedAt
    (created,) = [e for e in env.ledger(digest=digest, url=store_url) if e.outcome == "created"]
    assert (created.reason, created.pod, created.pulled_at) == ("backfill", "legacy", STARTED.timestamp())
    assert running.tags("created", env.registry.host) == 1


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


@pytest.mark.parametrize("count", [1, 5])
def test_a_pass_over_pages_counts_each_pod_once(env: Env, store_url: str, count: int) -> None:
    image, digest = _running_pods(env, count, annotate=False)
    store = env.open_store(store_url)
    done = _inventory(env, store, env.kube()).run_once()
    assert done is not None and done.digests == 1
    assert [(e.image, e.digest, e.pods) for e in store.inventory()] == [(image, digest, count)]
    store.close()
