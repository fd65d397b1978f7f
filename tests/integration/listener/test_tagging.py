"""End to end through the listener: events from the fake API server, tags in a real docker-registry."""

from __future__ import annotations

import time

import pytest

from listener.tagger import TaggerOptions
from pulltag.config import TaggingSettings
from tests.harness.redis import RedisServer
from tests.integration.listener.helpers import Env, fast_options, wait_for


def test_one_pulled_event_makes_one_tag_on_the_pulled_digest(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener()
    pod = env.pod("web-1", image)
    env.run(pod, digest)
    env.pulled(pod)
    wait_for(lambda: env.tags_on(repository, digest), what="a deployed_ tag on the digest")
    wait_for(lambda: env.pod_events("ImageTagged"), what="the ImageTagged event")
    tags = env.prefixed_tags(repository)
    assert len(tags) == 1 and tags[0].startswith("deployed_apps_")
    assert env.registry.tag_digest(repository, tags[0]) == digest
    [event] = env.pod_events("ImageTagged")
    assert event["type"] == "Normal"
    assert event["message"] == f"Tagged {env.registry.host}/{repository}@{digest} as {tags[0]}"
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
    assert event["source"]["component"] == "pulltag-listener"
    assert event["reportingComponent"] == "pulltag-listener"
    assert running.pulls("confirmed") == 1
    [entry] = env.ledger(digest=digest)
    assert (entry.outcome, entry.tag, entry.pod) == ("created", tags[0], "web-1")


def test_pending_image_id_is_retried_until_the_kubelet_writes_it(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener()
    pod = env.pod("slow-1", image)
    env.pulled(pod)  # the event comes before the status carries the imageID
    wait_for(
        lambda: (
            (running.listener.current and len(running.listener.current.confirmer.queue) > 0)
            or running.pulls("confirmed") > 0
        ),
        what="the pull to wait for its imageID",
    )
    env.run(pod, digest)
    wait_for(lambda: env.tags_on(repository, digest), what="the tag after the imageID appeared")
    assert running.pulls("no_digest") == 0


def test_forged_and_unadmitted_pulls_tag_nothing(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener()
    forged = env.pod("forged-1", image)
    env.run(forged, digest)
    env.pulled(forged, component="someone-else")
    unadmitted = env.pod("unadmitted-1", image, annotate=False)
    env.run(unadmitted, digest)
    env.pulled(unadmitted)
    wait_for(
        lambda: running.pulls("not_kubelet") == 1 and running.pulls("unadmitted") == 1,
        what="both pulls to be refused",
    )
    assert env.prefixed_tags(repository) == []
    assert env.pod_events("ImageTagged") == []


def test_dry_run_records_but_neither_tags_nor_posts_events(env: Env) -> None:
    repository, digest, image = env.image()
    env.start_listener(dry_run=True)
    pod = env.pod("dry-1", image)
    env.run(pod, digest)
    env.pulled(pod)
    wait_for(lambda: env.ledger(digest=digest), what="the dry-run ledger entry")
    [entry] = env.ledger(digest=digest)
    assert entry.outcome == "dry-run"
    assert env.prefixed_tags(repository) == []
    assert env.pod_events("ImageTagged") == []


@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_second_pull_of_a_tagged_digest_is_skipped(env: Env, store: str) -> None:
    url = env.redis_url if store == "redis" else env.sqlite_url
    repository, digest, image = env.image()
    running = env.start_listener(env.settings(store_url=url))
    first = env.pod("a-1", image)
    env.run(first, digest)
    env.pulled(first)
    wait_for(lambda: env.tags_on(repository, digest), what="the first tag")
    second = env.pod("a-2", image)
    env.run(second, digest)
    env.pulled(second, message=f'Container image "{image}" already present on machine')
    wait_for(lambda: running.pulls("confirmed") == 2, what="the second pull to be confirmed")
    wait_for(
        lambda: running.listener.current and running.listener.current.tagger.queue.idle(),
        what="the tagger to be idle",
    )
    assert len(env.prefixed_tags(repository)) == 1


def test_scope_namespace_tags_once_per_namespace(env: Env) -> None:
    repository, digest, image = env.image()
    env.api.create("namespaces", {"metadata": {"name": "other"}})
    settings = env.settings(tagging=TaggingSettings(scope="namespace"))
    running = env.start_listener(settings)
    for name, namespace in (("n-1", "apps"), ("n-2", "other"), ("n-3", "apps")):
        pod = env.pod(name, image, namespace=namespace)
        env.run(pod, digest)
        env.pulled(pod)
    wait_for(lambda: len(env.tags_on(repository, digest)) >= 2, what="one tag per namespace")
    wait_for(lambda: running.pulls("confirmed") == 3, what="three confirmed pulls")
    wait_for(
        lambda: running.listener.current and running.listener.current.tagger.queue.idle(),
        what="the tagger to be idle",
    )
    tags = env.tags_on(repository, digest)
    assert [t.split("_")[1] for t in tags] == ["apps", "other"]


def test_a_key_claimed_by_a_dead_worker_is_tagged_once_the_claim_expires(env: Env) -> None:
    """Found by the chaos suite (listener SIGKILLed mid-tag): a claim left by a killed process made the
    next listener mark the pull handled without tagging it."""
    repository, digest, image = env.image()
    store = env.open_store()
    try:
        # the dead worker's claim on the key (registry/repository@digest|, scope image)
        assert store.claim(f"tag:{env.registry.host}/{repository}@{digest}|", 1.5)
    finally:
        store.close()
    options = fast_options(tagger=TaggerOptions(retry_initial=0.05, retry_cap=0.3, claim_recheck_seconds=0.2))
    env.start_listener(options=options)
    pod = env.pod("orphan-1", image)
    env.run(pod, digest)
    env.pulled(pod)
    wait_for(lambda: env.tags_on(repository, digest), timeout=30, what="the tag after the claim expired")
    assert len(env.prefixed_tags(repository)) == 1


def test_a_store_outage_longer_than_the_retry_budget_loses_no_tag(env: Env, own_redis: RedisServer) -> None:
    """Found by the chaos suite (Redis killed during tagging): store failures before any registry call
    used up the registry's max_attempts and the tag was recorded as failed, the pull as handled."""
    repository, digest, image = env.image()
    env.start_listener(env.settings(store_url=own_redis.url(0), max_attempts=2))
    own_redis.kill()
    pod = env.pod("outage-1", image)
    env.run(pod, digest)
    env.pulled(pod)
    time.sleep(3)  # the store stays down well past two attempts' backoff: the pause is the scenario
    own_redis.restart()
    wait_for(lambda: env.tags_on(repository, digest), timeout=30, what="the tag after the store came back")
    assert len(env.prefixed_tags(repository)) == 1
