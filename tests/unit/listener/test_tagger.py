"""The tagger's decisions over in-memory fakes: what it tags, what the ledger says, what it requeues."""

from __future__ import annotations

from dataclasses import replace

from listener.tagger import TagJob

from .factories import DIGEST, OTHER_DIGEST
from .work import REPOSITORY, World, entry, job, settings, tag_plan

KEY = tag_plan().dedup_key


def test_a_new_digest_is_tagged_recorded_announced_and_its_pull_marked_handled() -> None:
    world = World()
    world.tagger.handle(KEY, job())
    assert world.registry.tags[REPOSITORY] == {tag_plan().tag: DIGEST}
    assert world.store.outcomes() == [("created", tag_plan().tag)]
    assert world.kube.reasons() == ["ImageTagged"]
    assert "event-1/1" in world.store.seen
    # done: the same key again does nothing more
    world.tagger.handle(KEY, job())
    assert world.store.outcomes() == [("created", tag_plan().tag)]


def test_a_digest_the_ledger_knows_as_tagged_is_skipped_without_a_registry_call() -> None:
    world = World()
    world.store.append_ledger(entry("created", "deployed_old"))
    world.registry.transient_failures = 99  # any registry call would fail
    world.tagger.handle(KEY, job())
    assert world.store.outcomes()[-1] == ("skipped", tag_plan().tag)
    assert "deployed_old (ledger)" in world.store.ledger[-1].reason
    assert REPOSITORY not in world.registry.tags


def test_a_digest_with_a_prefixed_tag_in_the_registry_is_skipped() -> None:
    world = World()
    world.registry.tags[REPOSITORY] = {"deployed_before": DIGEST}
    world.tagger.handle(KEY, job())
    assert world.store.outcomes() == [("skipped", tag_plan().tag)]
    assert world.registry.tags[REPOSITORY] == {"deployed_before": DIGEST}


def test_a_name_taken_by_another_digest_is_never_moved_the_suffixed_name_is_used() -> None:
    world = World()
    world.registry.tags[REPOSITORY] = {tag_plan().tag: OTHER_DIGEST}
    world.tagger.handle(KEY, job(tag_plan(skip_prefix=None)))
    suffixed = f"{tag_plan().tag}_{DIGEST.split(':')[1][:12]}"
    assert world.registry.tags[REPOSITORY] == {tag_plan().tag: OTHER_DIGEST, suffixed: DIGEST}
    assert world.store.outcomes() == [("created", suffixed)]


def test_a_transient_failure_requeues_the_job_and_records_nothing() -> None:
    world = World()
    world.registry.transient_failures = 1
    world.tagger.handle(KEY, job())
    assert world.store.ledger == []
    assert "event-1/1" not in world.store.seen  # not handled yet: a crash now re-handles it
    (again,) = world.tag_jobs()
    assert again.attempt == 1
    world.tagger.handle(KEY, again)
    assert world.store.outcomes() == [("created", tag_plan().tag)]


def test_max_attempts_transient_failures_record_failed_and_ask_for_a_catch_up() -> None:
    world = World(settings(max_attempts=2))
    gave_up: list[bool] = []
    world.tagger.on_gave_up = lambda: gave_up.append(True)
    world.registry.transient_failures = 99
    world.tagger.handle(KEY, job())
    (again,) = world.tag_jobs()
    world.tagger.handle(KEY, again)
    assert world.store.outcomes() == [("failed", tag_plan().tag)]
    assert world.kube.reasons() == ["ImageTagFailed"]
    assert gave_up == [True]
    assert world.tag_jobs() == []
    assert not world.store.claims  # the key is free for the catch-up pass


def test_a_store_outage_waits_for_the_store_without_counting_an_attempt() -> None:
    world = World(settings(max_attempts=1))
    world.store.down = True
    world.tagger.handle(KEY, job())  # with max_attempts 1, an attempt counted here would end as failed
    (again,) = world.tag_jobs()
    assert (again.attempt, again.store_failures) == (0, 1)
    world.store.down = False
    world.tagger.handle(KEY, again)
    assert world.store.outcomes() == [("created", tag_plan().tag)]


def test_a_key_claimed_by_another_worker_is_looked_at_again_not_tagged() -> None:
    world = World()
    world.store.claims.add(f"tag:{KEY}")
    world.tagger.handle(KEY, job())
    assert world.store.ledger == [] and REPOSITORY not in world.registry.tags
    assert [j.plan for j in world.tag_jobs()] == [tag_plan()]


def test_a_dry_run_records_dry_run_and_neither_tags_nor_posts_events() -> None:
    world = World(settings(dry_run=True))
    world.tagger.handle(KEY, job())
    assert world.store.outcomes() == [("dry-run", tag_plan().tag)]
    assert REPOSITORY not in world.registry.tags and world.kube.events == []
    # a second pull of the digest in the same dry run is skipped on the ledger's dry-run entry
    world.tagger.handle("other-key", job(tag_plan(dedup_key="other-key")))
    assert world.store.outcomes()[-1][0] == "skipped"


def test_merge_lets_an_events_plan_win_over_a_catch_up_plan() -> None:
    catch_up = job(tag_plan(tag="deployed_prod_20261126-101501", pulled_at=1.0), seen=frozenset())
    event = job(tag_plan(), seen=frozenset({"event-1/1"}))
    assert TagJob.merge(catch_up, event).plan == tag_plan()
    assert TagJob.merge(catch_up, event).seen_keys == {"event-1/1"}
    assert TagJob.merge(event, catch_up).plan == tag_plan()
    later = job(tag_plan(tag="later"), seen=frozenset({"event-1/2"}))
    assert TagJob.merge(event, later).plan == tag_plan()  # two events: the first queued stays


def test_a_backfilled_tag_says_so_in_the_ledger_and_takes_its_time_from_the_clock() -> None:
    world = World()
    world.tagger.clock = lambda: 1_234.5
    world.tagger.handle(KEY, replace(job(), origin="backfill"))
    (created,) = world.store.ledger
    assert (created.outcome, created.reason, created.tagged_at) == ("created", "backfill", 1_234.5)
    # a later outcome of a backfilled job keeps both the origin and the reason
    other = World()
    other.registry.tags[REPOSITORY] = {"deployed_before": DIGEST}
    other.tagger.handle(KEY, replace(job(), origin="backfill"))
    assert other.store.ledger[-1].reason.startswith("backfill: already tagged deployed_before")
