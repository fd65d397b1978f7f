"""The catch-up pass at start against the informer's initial list: a container whose `Pulled` event is in
that list is tagged with the event's time, never with the container's start time."""

from __future__ import annotations

import datetime as dt

import pytest

from pulltag.config import TaggingSettings
from tests.integration.listener.helpers import Env, wait_for

# As found by a new user: the container started at ...35, its `Pulled` event says ...36.
STARTED = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
PULLED = STARTED + dt.timedelta(seconds=1)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("scope", ["image", "every"])
def test_a_container_with_an_event_in_the_initial_list_gets_the_events_time(env: Env, scope: str) -> None:
    repository, digest, image = env.image()
    pod = env.pod("sidecar-1", image)
    env.run(pod, digest, started=_stamp(STARTED))
    env.pulled(pod, when=_stamp(PULLED))
    # The initial list is slow (as in a big cluster): its first attempt is answered 429, Retry-After 3 s.
    # A catch-up pass that does not wait for it finds the running container first and takes its start.
    env.api.fail_requests(count=1, status=429, retry_after=3, path_contains="/api/v1/events")
    tagging = TaggingSettings(scope=scope)  # type: ignore[arg-type]
    running = env.start_listener(env.settings(tagging=tagging, catch_up=True))
    wait_for(lambda: env.tags_on(repository, digest), what="the tag")
    wait_for(lambda: running.pulls("confirmed") == 1, what="the event to be confirmed")
    wait_for(lambda: running.listener.current is not None and running.listener.current.tagger.queue.idle())
    assert env.prefixed_tags(repository) == [f"deployed_apps_{PULLED:%Y%m%d-%H%M%S}"]
    created = [e for e in env.ledger(digest=digest) if e.outcome == "created"]
    assert [e.pulled_at for e in created] == [PULLED.timestamp()]
