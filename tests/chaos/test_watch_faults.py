"""The listener's watch under a misbehaving API server: streams closed every second, 410 storms, and a
stream that goes silent without closing (half-open). No Pulled event may be lost or tagged twice."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import Rollout, assert_exactly_tagged, every, sized
from tests.chaos.conftest import MakeWorld
from tests.harness.world import World

pytestmark = pytest.mark.timeout(600)


def test_watches_closed_every_second_during_a_rollout(make_world: MakeWorld) -> None:
    world = make_world(kubelet_transport="http")  # the kubelet's watches are closed too
    rollout = Rollout(world)
    closes = 0

    def close() -> None:
        nonlocal closes
        closes += 1
        world.api.close_watches(abrupt=closes % 2 == 0)  # alternately graceful and a dropped connection

    with every(1.0, close) as errors:
        rollout.run(sized(12, 60))
    assert not errors
    assert closes >= 5
    assert_exactly_tagged(world, rollout.pods)
    assert world.metric("pulltag_watch_restarts_total") >= 3


def test_410_storm_during_a_rollout(make_world: MakeWorld) -> None:
    # the kubelet over HTTP relists on 410 (its in-process watch does not handle compaction)
    world = make_world(kubelet_transport="http")
    rollout = Rollout(world)

    def storm() -> None:
        world.api.compact()
        world.api.close_watches()  # the reconnect now asks for a compacted resourceVersion: 410

    with every(0.7, storm) as errors:
        rollout.run(sized(10, 60))
    assert not errors
    assert_exactly_tagged(world, rollout.pods)
    assert world.metric("pulltag_watch_restarts_total", cause="gone") >= 2


def _event_watches(world: World) -> int:
    """How many watches on Events the API server has accepted so far."""
    return sum(1 for r in world.api.requests("GET", "/api/v1/events") if r.query.get("watch") == "true")


def test_half_open_watch_is_detected_by_the_read_timeout(make_world: MakeWorld) -> None:
    world = make_world()
    rollout = Rollout(world)
    rollout.run(2)
    for _ in range(int(sized(2, 8))):
        before = world.metric("pulltag_watch_restarts_total", cause="stalled")
        opened = _event_watches(world)
        assert world.api.stall_watches() >= 1
        # pods created while the listener's stream is silent: only a new stream can deliver their events
        rollout.run(2)
        world.wait_for(
            lambda b=before: world.metric("pulltag_watch_restarts_total", cause="stalled") > b,  # type: ignore[misc]
            30,
            "the listener to notice the silent stream",
        )
        # the old stalled stream is released server-side; the next round stalls the listener's new one
        world.api.unstall_watches()
        world.wait_for(lambda o=opened: _event_watches(world) > o, 30, "the listener to watch again")  # type: ignore[misc]
    assert_exactly_tagged(world, rollout.pods)
