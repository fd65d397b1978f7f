"""The catch-up pass's decisions over in-memory fakes: what it queues, with which time, and when."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from listener.pulls import seen_key
from listener.seen import LatestPulls
from pulltag.store import StoreError
from tests.harness.procs import wait_for

from .factories import DIGEST, make_pod, make_pull
from .work import World, entry, settings

STARTED = "2026-11-26T10:15:35Z"
EVENT_TIME = datetime(2026, 11, 26, 10, 15, 36, tzinfo=UTC)


def _running_pod(**changes: Any) -> dict[str, Any]:
    status = {
        "name": "app",
        "image": "docker.io/library/nginx:1.25",
        "imageID": f"docker.io/library/nginx@{DIGEST}",
        "restartCount": 0,
        "state": {"running": {"startedAt": STARTED}},
    }
    status.update(changes)
    return make_pod(statuses={"containerStatuses": [status]})


def test_a_running_admitted_container_without_an_event_is_queued_with_its_start_time() -> None:
    world = World(pods=[_running_pod()])
    assert world.reconciler.run_once() == 1
    (job,) = world.tag_jobs()
    assert job.plan.tag == "deployed_prod_20261126-101535"
    assert job.seen_keys == frozenset()


def test_a_container_with_a_seen_event_is_queued_with_the_events_time_and_identity() -> None:
    world = World(settings("every"), pods=[_running_pod()])
    event_pull = make_pull(pulled_at=EVENT_TIME)
    world.latest.add(event_pull)
    world.reconciler.run_once()
    (job,) = world.tag_jobs()
    assert job.plan.tag == "deployed_prod_20261126-101536"
    assert job.plan.pulled_at == EVENT_TIME.timestamp()
    # the event path's own work item: both coalesce in the queue and share the done marker
    assert job.plan.dedup_key.endswith(seen_key(event_pull))


def test_what_the_ledger_shows_tagged_and_pods_not_admitted_are_not_queued() -> None:
    not_admitted = _running_pod()
    del not_admitted["metadata"]["annotations"]
    world = World(pods=[not_admitted])
    assert world.reconciler.run_once() == 0
    world = World(pods=[_running_pod()])
    world.store.append_ledger(entry("created", "deployed_prod_earlier"))
    assert world.reconciler.run_once() == 0
    world = World(pods=[_running_pod(state={"waiting": {"reason": "ContainerCreating"}})])
    assert world.reconciler.run_once() == 0


def test_the_first_pass_waits_until_the_event_path_is_ready() -> None:
    world = World(settings(reconcile_interval_seconds=3600), pods=[_running_pod()])
    ready = threading.Event()
    asked = threading.Event()

    def wait_ready(stop: threading.Event) -> bool:
        asked.set()
        while not ready.wait(0.05):
            if stop.is_set():
                return False
        return True

    world.reconciler.wait_ready = wait_ready
    world.reconciler.start()
    try:
        assert asked.wait(5)
        assert world.reconciler.passes == 0 and len(world.tagger.queue) == 0
        ready.set()
        wait_for(lambda: world.reconciler.passes > 0, 5, "the first pass")
        assert len(world.tagger.queue) == 1
    finally:
        world.reconciler.stop()


def test_latest_pulls_keeps_the_newest_event_of_each_container_within_its_bound() -> None:
    latest = LatestPulls(max_entries=2)
    started = make_pull(event_uid="catch-up:x", pulled_at=datetime(2026, 11, 26, 10, 15, 35, tzinfo=UTC))
    assert latest.of(started) == started
    newer = make_pull(pulled_at=EVENT_TIME, event_count=2, node="node-7")
    latest.add(newer)
    latest.add(make_pull())  # older, delivered late by a relist
    assert latest.of(started) == replace(
        started, event_uid=newer.event_uid, event_count=2, pulled_at=EVENT_TIME, node="node-7"
    )
    latest.add(make_pull(container="b"))
    latest.add(make_pull(container="c"))
    assert len(latest) == 2
    assert latest.of(started) == started


# --- backfill ---------------------------------------------------------------------------------------------
def _never_admitted(**changes: Any) -> dict[str, Any]:
    body = _running_pod(**changes)
    del body["metadata"]["annotations"]
    return body


def _backfill(on: bool) -> Any:
    config = settings()
    return replace(config, tagging=replace(config.tagging, backfill=on))


def test_backfill_queues_a_never_admitted_running_container_from_its_status() -> None:
    world = World(_backfill(True), pods=[_never_admitted()])
    assert world.reconciler.run_once() == 1
    (job,) = world.tag_jobs()
    assert (job.plan.digest, job.origin) == (DIGEST, "backfill")
    assert job.plan.tag == "deployed_prod_20261126-101535"  # the container's start
    assert job.plan.image_name == "docker.io/library/nginx"


def test_without_backfill_a_never_admitted_container_is_not_queued() -> None:
    world = World(_backfill(False), pods=[_never_admitted()])
    assert world.reconciler.run_once() == 0


def test_an_admitted_pod_is_never_taken_as_backfill() -> None:
    world = World(_backfill(True), pods=[_running_pod()])
    world.reconciler.run_once()
    assert [job.origin for job in world.tag_jobs()] == [""]


def test_backfill_takes_the_digest_from_the_status_or_nothing() -> None:
    # another repository in the imageID than the spec names, a bare local id, a container not running
    for changes in (
        {"imageID": f"docker.io/library/httpd@{DIGEST}"},
        {"imageID": DIGEST},
        {"state": {"waiting": {"reason": "ImagePullBackOff"}}},
    ):
        world = World(_backfill(True), pods=[_never_admitted(**changes)])
        assert world.reconciler.run_once() == 0, changes


def test_backfill_never_acts_on_a_store_it_could_not_ask() -> None:
    # the store is down: an admitted pod whose annotation is gone must not pass for a never-admitted one
    world = World(_backfill(True), pods=[_never_admitted()])
    world.store.failing.add("get_admission")
    with pytest.raises(StoreError):  # the pass fails (logged, tried again), nothing queued
        world.reconciler.run_once()
    assert world.tag_jobs() == []
