"""The listener under API server faults, restarts and a second replica: nothing missed, nothing doubled."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import replace

import pytest

from pulltag.config import TaggingSettings
from tests.integration.listener.helpers import Env, RunningListener, wait_for

EVERY = TaggingSettings(scope="every", template="{prefix}_{pod}")


def _make_pulls(env: Env, digest: str, image: str, names: list[str]) -> None:
    for name in names:
        pod = env.pod(name, image)
        env.run(pod, digest)
        env.pulled(pod)


def _assert_each_pod_tagged_once(env: Env, repository: str, digest: str, names: list[str]) -> None:
    tags = env.prefixed_tags(repository)
    assert sorted(tags) == sorted(f"deployed_{n}" for n in names)
    for tag in (tags[0], tags[-1]):
        assert env.registry.tag_digest(repository, tag) == digest
    outcomes = collections.Counter(e.outcome for e in env.ledger(digest=digest))
    assert outcomes == {"created": len(names)}, outcomes
    per_pod = collections.Counter(e["involvedObject"]["name"] for e in env.pod_events("ImageTagged"))
    assert set(per_pod) == set(names) and set(per_pod.values()) == {1}


def _idle(running: RunningListener) -> bool:
    run = running.listener.current
    return (
        run is not None and run.queue_depth() == 0 and run.tagger.queue.idle() and run.confirmer.queue.idle()
    )


@pytest.mark.slow
def test_watch_closed_every_second_during_a_burst_of_500_pulls(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener(env.settings(tagging=EVERY))
    wait_for(lambda: running.listener.ready()[0], what="the first list")
    stop = threading.Event()

    def closer() -> None:
        while not stop.wait(1.0):
            env.api.close_watches()

    thread = threading.Thread(target=closer, daemon=True)
    thread.start()
    names = [f"burst-{i:03d}" for i in range(500)]
    try:
        _make_pulls(env, digest, image, names)
        wait_for(lambda: running.tags("created", env.registry.host) == 500, timeout=120, what="500 tags")
    finally:
        stop.set()
        thread.join()
    wait_for(lambda: _idle(running), what="the listener to be idle")
    assert running.metrics.value("pulltag_watch_restarts_total", {"cause": "closed"}) >= 1
    _assert_each_pod_tagged_once(env, repository, digest, names)


def test_410_in_the_middle_relists_without_retagging(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener(env.settings(tagging=EVERY))
    first = [f"before-{i}" for i in range(5)]
    _make_pulls(env, digest, image, first)
    wait_for(lambda: running.tags("created", env.registry.host) == 5, what="the first five tags")
    # The stream falls silent, history moves on and is compacted: when it resumes, 410 Gone.
    env.api.stall_watches()
    second = [f"after-{i}" for i in range(5)]
    _make_pulls(env, digest, image, second)
    env.api.compact()
    env.api.unstall_watches()
    wait_for(lambda: running.tags("created", env.registry.host) == 10, what="the next five tags")
    wait_for(lambda: _idle(running), what="the listener to be idle")
    assert running.metrics.value("pulltag_watch_restarts_total", {"cause": "gone"}) >= 1
    informer = running.listener.current.informer  # type: ignore[union-attr]
    assert informer.lists >= 2
    _assert_each_pod_tagged_once(env, repository, digest, first + second)


@pytest.mark.slow
def test_api_server_down_for_20s_backs_off_then_recovers(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener(env.settings(tagging=EVERY))
    _make_pulls(env, digest, image, ["up-1"])
    wait_for(lambda: running.tags("created", env.registry.host) == 1, what="the first tag")
    env.api.stop()
    unreachable = {"cause": "unreachable"}
    # The outage itself lasts 20 s (the scenario, not a synchronisation): the listener keeps failing.
    threading.Event().wait(20.0)
    attempts = running.metrics.value("pulltag_watch_restarts_total", unreachable)
    assert attempts >= 3, "the listener should keep trying while the API server is down"
    # backoff capped at 1 s in this test: ~20 attempts at most, not a hot loop
    assert attempts <= 40, f"{attempts} attempts in 20 s is a hot loop"
    assert running.listener.healthy()[0]  # 20 s is well within the 5 minute budget
    env.api.restart()
    _make_pulls(env, digest, image, ["up-2", "up-3"])
    wait_for(lambda: running.tags("created", env.registry.host) == 3, timeout=30, what="tags after recovery")
    _assert_each_pod_tagged_once(env, repository, digest, ["up-1", "up-2", "up-3"])


def test_429_retry_after_is_honoured(env: Env) -> None:
    _repository, digest, image = env.image()
    env.api.fail_requests(count=3, status=429, retry_after=1, path_contains="/events")
    running = env.start_listener(env.settings(tagging=EVERY))
    _make_pulls(env, digest, image, ["throttled-1"])
    wait_for(lambda: running.tags("created", env.registry.host) == 1, what="the tag after throttling")
    assert running.metrics.value("pulltag_watch_restarts_total", {"cause": "throttled"}) >= 1


def test_two_listeners_at_once_make_one_tag_per_key(env: Env) -> None:
    images = [env.image() for _ in range(5)]
    settings = env.settings()
    a = env.start_listener(settings)
    b = env.start_listener(settings)
    names = []
    for i in range(20):
        repository, digest, image = images[i % 5]
        name = f"pair-{i:02d}"
        names.append(name)
        pod = env.pod(name, image)
        env.run(pod, digest)
        env.pulled(pod)
    # Seen markers are shared: a pull one replica finished, the other drops unhandled. Together they
    # confirmed every pull at least once.
    wait_for(lambda: a.pulls("confirmed") + b.pulls("confirmed") >= 20, what="every pull confirmed")
    for repository, digest, _ in images:
        wait_for(lambda r=repository, d=digest: env.tags_on(r, d), what=f"a tag on {repository}")
    wait_for(lambda: _idle(a) and _idle(b), what="both listeners idle")
    for repository, digest, _ in images:
        assert len(env.tags_on(repository, digest)) == 1
        assert len(env.prefixed_tags(repository)) == 1
        assert [e.outcome for e in env.ledger(digest=digest) if e.outcome == "created"] == ["created"]


def test_listener_started_after_the_pods_ran_catches_up(env: Env) -> None:
    images = [env.image() for _ in range(3)]
    for i, (_, digest, image) in enumerate(images):
        env.run(env.pod(f"early-{i}", image), digest)  # ran, and their events are long gone
    env.run(env.pod("not-admitted", images[0][2], annotate=False), images[0][1])
    running = env.start_listener(env.settings(catch_up=True))
    for repository, digest, _ in images:
        wait_for(lambda r=repository, d=digest: env.tags_on(r, d), what=f"catch-up tag on {repository}")
    wait_for(lambda: _idle(running), what="the listener to be idle")
    for repository, _digest, _ in images:
        assert len(env.prefixed_tags(repository)) == 1
    assert running.listener.current.reconciler.passes >= 1  # type: ignore[union-attr]
    # A second pass finds nothing new to tag.
    assert running.listener.current.reconciler.run_once() == 0  # type: ignore[union-attr]


def test_catch_up_under_scope_every_does_not_retag_a_pod_behind_many_newer_entries(
    env: Env, store_url: str
) -> None:
    # A DaemonSet-sized digest: the tagged pod's ledger entry sits behind 250 newer ones of the same
    # digest. Scope "every" has no registry check to fall back on, so a catch-up that only read the
    # digest's newest entries would tag this pod a second time.
    repository, digest, image = env.image()
    settings = env.settings(store_url=store_url, tagging=EVERY)
    running = env.start_listener(settings)
    tagged = env.pod("tagged", image)
    env.run(tagged, digest)
    env.pulled(tagged)
    wait_for(lambda: env.tags_on(repository, digest) == ["deployed_tagged"], what="the event-path tag")
    wait_for(lambda: _idle(running), what="the listener to be idle")
    [first] = env.ledger(digest=digest, url=store_url)
    for i in range(250):
        running.store.append_ledger(
            replace(first, pod=f"ds-{i}", tag=f"deployed_ds-{i}", tagged_at=time.time())
        )
    # A pod whose Pulled event was lost: the catch-up is what tags it.
    env.run(env.pod("missed", image), digest)

    reconciler = running.listener.current.reconciler  # type: ignore[union-attr]
    assert reconciler.run_once() == 1
    wait_for(lambda: "deployed_missed" in env.tags_on(repository, digest), what="the catch-up tag")
    wait_for(lambda: _idle(running), what="the listener to be idle")
    assert reconciler.run_once() == 0
    assert env.prefixed_tags(repository) == ["deployed_missed", "deployed_tagged"]
    created = [
        e.pod
        for e in env.ledger(digest=digest, url=store_url)
        if e.outcome == "created" and not e.pod.startswith("ds-")
    ]
    assert sorted(created) == ["missed", "tagged"]
