"""End to end through the listener: events from the fake API server, tags in a real docker-registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from listener.plan import fallback_tag
from pulltag.config import TaggingSettings
from tests.harness.faultproxy import FaultProxy
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.redis import RedisServer
from tests.harness.registry import RegistryServer
from tests.integration.listener.helpers import Env, now_rfc3339, wait_for


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
    env.start_listener(env.settings(dry_run=True))
    pod = env.pod("dry-1", image)
    env.run(pod, digest)
    env.pulled(pod)
    wait_for(lambda: env.ledger(digest=digest), what="the dry-run ledger entry")
    [entry] = env.ledger(digest=digest)
    assert entry.outcome == "dry-run"
    assert env.prefixed_tags(repository) == []
    assert env.pod_events("ImageTagged") == []


def test_second_pull_of_a_tagged_digest_is_skipped(env: Env, store_url: str) -> None:
    repository, digest, image = env.image()
    running = env.start_listener(env.settings(store_url=store_url))
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
    env.start_listener(env.settings(claim_recheck_seconds=0.2))
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


def pull_at(env: Env, name: str, image: str, digest: str, stamp: str) -> None:
    """A pod of `image` that runs `digest`, and its kubelet Pulled event at time `stamp`."""
    pod = env.pod(name, image)
    env.run(pod, digest)
    env.pulled(pod, when=stamp)


def test_two_digests_of_one_repository_pulled_in_the_same_second_both_get_a_tag(env: Env) -> None:
    # The default template names a tag by namespace and second: both pulls render the same name. The
    # first digest gets it; the second must get a digest-suffixed name, and the first tag never moves.
    repository, first_digest, first_image = env.image("v1")
    second_digest = env.registry.seed_image(repository, "v2")
    running = env.start_listener()
    stamp = now_rfc3339()
    pull_at(env, "same-second-1", first_image, first_digest, stamp)
    wait_for(lambda: env.tags_on(repository, first_digest), what="the first digest's tag")
    pull_at(env, "same-second-2", f"{env.registry.host}/{repository}:v2", second_digest, stamp)
    wait_for(lambda: running.tags("created", env.registry.host) == 2, what="two created tags")
    [first_tag] = env.tags_on(repository, first_digest)
    [second_tag] = env.tags_on(repository, second_digest)
    assert second_tag == f"{first_tag}_{second_digest.removeprefix('sha256:')[:12]}"
    assert env.registry.tag_digest(repository, first_tag) == first_digest
    assert running.tags("failed", env.registry.host) == 0
    [entry] = env.ledger(digest=second_digest)
    assert (entry.outcome, entry.tag) == ("created", second_tag)
    assert first_tag in entry.reason
    wait_for(lambda: len(env.pod_events("ImageTagged")) == 2, what="two ImageTagged events")
    messages = {e["message"] for e in env.pod_events("ImageTagged")}
    assert f"Tagged {env.registry.host}/{repository}@{second_digest} as {second_tag}" in messages


def test_two_digests_racing_for_one_tag_name_never_move_it(env: Env, store_url: str) -> None:
    # Found by the chaos suite: two digests of one repository pulled in the same second, tagged at the
    # same moment. Both found the name free and both PUTs succeeded, so the second moved the tag off the
    # first digest and left it untagged. A slow PUT keeps both writes in flight together, every time.
    repository, first_digest, _ = env.image("v1")
    second_digest = env.registry.seed_image(repository, "v2")
    proxy = FaultProxy(env.registry.host).start()
    try:
        proxy.delay(0.5, method="PUT")
        settings = replace(
            env.settings(store_url=store_url, tagging=TaggingSettings(scope="namespace")),
            registries=(env.registry.settings(None, host=proxy.host),),
        )
        running = env.start_listener(settings)
        stamp = now_rfc3339()
        pull_at(env, "race-1", f"{proxy.host}/{repository}:v1", first_digest, stamp)
        pull_at(env, "race-2", f"{proxy.host}/{repository}:v2", second_digest, stamp)
        wait_for(lambda: running.tags("created", proxy.host) == 2, what="two created tags")
        tags = {d: env.tags_on(repository, d) for d in (first_digest, second_digest)}
        [first_tag], [second_tag] = tags[first_digest], tags[second_digest]
        # Either may win the name; the other then carries it with its own digest's suffix.
        assert second_tag == fallback_tag(first_tag, second_digest) or first_tag == fallback_tag(
            second_tag, first_digest
        ), tags
        assert running.tags("failed", proxy.host) == 0
        for digest in (first_digest, second_digest):
            [entry] = env.ledger(digest=digest, url=store_url)
            assert (entry.outcome, [entry.tag]) == ("created", tags[digest])
    finally:
        proxy.stop()


def test_a_conflict_on_the_suffixed_name_too_is_a_failure_that_moves_nothing(env: Env) -> None:
    repository, first_digest, first_image = env.image("v1")
    second_digest = env.registry.seed_image(repository, "v2")
    third_digest = env.registry.seed_image(repository, "v3")
    running = env.start_listener()
    stamp = now_rfc3339()
    pull_at(env, "conflict-1", first_image, first_digest, stamp)
    wait_for(lambda: env.tags_on(repository, first_digest), what="the first digest's tag")
    [first_tag] = env.tags_on(repository, first_digest)
    suffixed = fallback_tag(first_tag, second_digest)
    env.registry.set_tag(repository, suffixed, third_digest)  # someone else holds the suffixed name
    pull_at(env, "conflict-2", f"{env.registry.host}/{repository}:v2", second_digest, stamp)
    wait_for(lambda: running.tags("failed", env.registry.host) == 1, what="the failed outcome")
    assert env.tags_on(repository, second_digest) == []
    assert env.registry.tag_digest(repository, first_tag) == first_digest
    assert env.registry.tag_digest(repository, suffixed) == third_digest
    [entry] = env.ledger(digest=second_digest)
    assert entry.outcome == "failed" and suffixed in entry.reason
    wait_for(lambda: env.pod_events("ImageTagFailed"), what="the ImageTagFailed event")


def test_a_registry_outage_longer_than_the_retries_is_tagged_by_an_early_catch_up(env: Env) -> None:
    # max_attempts transient failures record `failed`; the catch-up pass asked for by the tagger then
    # tags the digest once the registry is back, long before the regular reconcile interval (1 h here).
    repository, digest, _image = env.image()
    proxy = FaultProxy(env.registry.host).start()
    try:
        settings = replace(
            env.settings(
                max_attempts=2, failed_retry_seconds=0.5, reconcile_interval_seconds=3600, catch_up=True
            ),
            registries=(env.registry.settings(None, host=proxy.host),),
        )
        running = env.start_listener(settings)
        proxy.go_down()
        pod = env.pod("registry-down-1", f"{proxy.host}/{repository}:v1")
        env.run(pod, digest)
        env.pulled(pod)
        wait_for(lambda: running.tags("failed", proxy.host) >= 1, what="the tag to be given up")
        assert [e.outcome for e in env.ledger(digest=digest)][-1] == "failed"
        assert env.tags_on(repository, digest) == []
        proxy.come_up()
        wait_for(lambda: env.tags_on(repository, digest), what="the tag after the registry came back")
        wait_for(lambda: running.tags("created", proxy.host) == 1, what="the created outcome")
        assert len(env.prefixed_tags(repository)) == 1
        assert next(e.outcome for e in env.ledger(digest=digest)) == "created"  # newest first
    finally:
        proxy.stop()


def test_a_ledger_the_store_cannot_read_does_not_fail_the_tag(env: Env, own_redis: RedisServer) -> None:
    # Found by the chaos suite (Redis killed between the claim and the ledger lookup): a store error
    # there made the tag `failed` although nothing had been tried. A Redis user that may do everything
    # but the ledger query (ZREVRANGEBYSCORE) makes that error happen on every tag, deterministically.
    admin = redis.Redis(host="127.0.0.1", port=own_redis.port)
    admin.acl_setuser(
        "tagger", enabled=True, passwords=["+tagger-pw"], keys=["*"], commands=["+@all", "-zrevrangebyscore"]
    )
    url = f"redis://tagger:tagger-pw@127.0.0.1:{own_redis.port}/0"
    repository, digest, image = env.image()
    running = env.start_listener(env.settings(store_url=url))
    pod = env.pod("no-ledger-1", image)
    env.run(pod, digest)
    env.pulled(pod)
    wait_for(lambda: running.tags("created", env.registry.host) == 1, what="the tag to be created")
    assert len(env.tags_on(repository, digest)) == 1
    assert running.tags("failed", env.registry.host) == 0
    [entry] = env.ledger(digest=digest, url=own_redis.url(0))
    assert entry.outcome == "created"


def test_a_name_made_by_hand_on_another_digest_gives_the_suffixed_name(env: Env, store_url: str) -> None:
    # The tag name's claim is taken before the listing so that `create_tag` can skip its lookup of a name
    # the listing does not show; a name the listing does show, here on another digest and never seen by
    # the listener, is still looked up, left where it is, and the digest gets the suffixed name.
    repository, other_digest, _ = env.image("v1")
    digest = env.registry.seed_image(repository, "v2")
    env.registry.set_tag(repository, "deployed_apps", other_digest)  # the name this pull renders
    tagging = TaggingSettings(template="{prefix}_{namespace}")
    running = env.start_listener(env.settings(store_url=store_url, tagging=tagging))
    pull_at(env, "by-hand-1", f"{env.registry.host}/{repository}:v2", digest, now_rfc3339())
    wait_for(lambda: running.tags("created", env.registry.host) == 1, what="the created tag")
    assert env.tags_on(repository, digest) == [fallback_tag("deployed_apps", digest)]
    assert env.registry.tag_digest(repository, "deployed_apps") == other_digest
    [entry] = env.ledger(digest=digest, url=store_url)
    assert entry.outcome == "created" and "deployed_apps is on" in entry.reason


@pytest.fixture
def token_env(
    kubeapi: FakeKubeAPI, kubeconfig: str, token_registry: RegistryServer, redis_url: str, tmp_path: Path
) -> Iterator[Env]:
    environment = Env(kubeapi, kubeconfig, token_registry, redis_url, tmp_path)
    yield environment
    environment.close()


def test_the_first_tag_of_a_new_repository_costs_four_registry_requests(token_env: Env) -> None:
    # Issue 13: with the realm known, a new repository costs its token (pull and push at once), the tag
    # listing (taken under the name's claim), the manifest GET and the PUT; no HEAD of the new name.
    registry = token_env.registry
    assert registry.token_server is not None
    proxy = FaultProxy(registry.host).start()  # counts what reaches the registry
    try:
        credentials = str(registry.credentials_file("admin", key=proxy.host))
        through_proxy = registry.settings("admin", host=proxy.host, credentials=credentials)
        settings = replace(token_env.settings(), registries=(through_proxy,))
        running = token_env.start_listener(settings)
        warm_repository, warm_digest, _ = token_env.image()  # learns the realm, warms the client
        pull_at(token_env, "warm-1", f"{proxy.host}/{warm_repository}:v1", warm_digest, now_rfc3339())
        wait_for(lambda: running.tags("created", proxy.host) == 1, what="the first repository's tag")
        repository, digest, _ = token_env.image()
        registry_before, tokens_before = proxy.stats.forwarded, len(registry.token_server.records())
        pull_at(token_env, "new-1", f"{proxy.host}/{repository}:v1", digest, now_rfc3339())
        wait_for(lambda: running.tags("created", proxy.host) == 2, what="the new repository's tag")
        registry_requests = proxy.stats.forwarded - registry_before
        token_requests = len(registry.token_server.records()) - tokens_before
        assert (token_requests, registry_requests) == (1, 3)
        assert len(token_env.tags_on(repository, digest)) == 1
    finally:
        proxy.stop()
