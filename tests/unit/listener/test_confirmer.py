"""The confirmer's decisions over in-memory fakes: which pulls become tag jobs, which wait, which end."""

from __future__ import annotations

import time

from listener.confirmer import ConfirmJob
from listener.pulls import seen_key
from pulltag.store.base import AdmissionRecord

from .factories import DIGEST, POD_UID, make_pod, make_pull
from .work import World, settings

PULL = make_pull()
KEY = seen_key(PULL)
RECORD = AdmissionRecord(
    uid=POD_UID, namespace="prod", name="web-0", images={"containers": {"app": "nginx:1.25"}}
)


def _handle(world: World, job: ConfirmJob | None = None) -> None:
    world.confirmer.handle(KEY, job or ConfirmJob(PULL, time.monotonic()))


def _pulls(world: World, outcome: str) -> float:
    return world.metrics.value("pulltag_pulls_total", {"outcome": outcome})


def test_a_confirmed_pull_becomes_a_tag_job_with_the_events_time_and_key() -> None:
    world = World(pods=[make_pod()])
    world.store.put_admission(RECORD)
    _handle(world)
    (job,) = world.tag_jobs()
    assert (job.plan.digest, job.plan.tag) == (DIGEST, "deployed_prod_20261126-101502")
    assert job.plan.pulled_at == PULL.pulled_at.timestamp()
    assert job.seen_keys == {KEY}
    assert KEY not in world.store.seen  # marked by the tagger once the tag is done
    assert _pulls(world, "confirmed") == 1


def test_without_a_store_record_the_pods_annotation_is_the_record() -> None:
    for broken_store in (False, True):
        world = World(pods=[make_pod()])
        if broken_store:
            world.store.failing.add("get_admission")
        _handle(world)
        assert [j.plan.digest for j in world.tag_jobs()] == [DIGEST]


def test_a_pod_neither_recorded_nor_annotated_is_unadmitted_and_handled() -> None:
    pod = make_pod()
    del pod["metadata"]["annotations"]
    world = World(pods=[pod])
    _handle(world)
    assert world.tag_jobs() == []
    assert _pulls(world, "unadmitted") == 1
    assert KEY in world.store.seen


def test_a_pod_without_an_image_id_yet_is_retried_then_ends_as_no_digest() -> None:
    world = World(settings(imageid_wait_seconds=0.2), pods=[make_pod(statuses={})])
    _handle(world)
    assert len(world.confirmer.queue) == 1 and KEY not in world.store.seen
    item = world.confirmer.queue.get(timeout=5)
    assert item is not None and item[1].attempt == 1
    world.confirmer.queue.done(KEY)
    _handle(world, ConfirmJob(PULL, time.monotonic() - 1.0))  # waited longer than imageid_wait_seconds
    assert _pulls(world, "no_digest") == 1
    assert KEY in world.store.seen
    assert world.tag_jobs() == []


def test_an_api_server_failure_is_retried_and_never_marks_the_pull_handled() -> None:
    world = World(settings(api_patience_seconds=0.5), pods=[make_pod()])
    world.store.put_admission(RECORD)
    world.kube.failures = 1
    _handle(world)
    assert len(world.confirmer.queue) == 1
    world.kube.failures = 1
    _handle(world, ConfirmJob(PULL, time.monotonic() - 1.0))  # past the patience: given up for now
    assert KEY not in world.store.seen  # a relist or the catch-up pass handles it later
    assert _pulls(world, "no_digest") == 0


def test_an_opted_out_pod_is_filtered_and_handled() -> None:
    world = World(pods=[make_pod(labels={"pulltag.dev/ignore": "true"})])
    world.store.put_admission(RECORD)
    _handle(world)
    assert world.tag_jobs() == []
    assert _pulls(world, "filtered") == 1
    assert KEY in world.store.seen


def test_a_confirmed_pull_tells_the_inventory_what_runs_where() -> None:
    world = World(pods=[make_pod()])
    world.store.put_admission(RECORD)
    told: list[tuple[str, str, str]] = []
    world.confirmer.on_confirmed = lambda image, digest, namespace: told.append((image, digest, namespace))
    _handle(world)
    assert told == [("docker.io/library/nginx", DIGEST, "prod")]
    # a pull that does not count tells nothing
    unadmitted = make_pod()
    del unadmitted["metadata"]["annotations"]
    world = World(pods=[unadmitted])
    world.confirmer.on_confirmed = lambda image, digest, namespace: told.append((image, digest, namespace))
    _handle(world)
    assert len(told) == 1
