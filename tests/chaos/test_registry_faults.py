"""The registry misbehaves between the listener and the real docker-registry (a fault proxy): 30 % of
requests answered 500/503/429, and the registry unreachable (connection refused) for a while."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import Rollout, assert_exactly_tagged, sized
from tests.chaos.conftest import MakeWorld

pytestmark = pytest.mark.timeout(600)


def test_registry_failing_30_percent_of_requests(make_world: MakeWorld) -> None:
    world = make_world(registry_proxy=True)
    assert world.proxy is not None
    rollout = Rollout(world)
    world.proxy.fail(0.3, (500, 503, 429), retry_after=1)
    rollout.run(sized(10, 60))
    assert_exactly_tagged(world, rollout.pods, timeout=180)
    assert world.proxy.stats.injected >= 3, world.proxy.stats
    world.proxy.clear()


def test_registry_unreachable_during_a_rollout(make_world: MakeWorld) -> None:
    world = make_world(registry_proxy=True)
    assert world.proxy is not None
    rollout = Rollout(world)
    rollout.run(2)
    with world.proxy.down():
        rollout.run(sized(8, 25))  # pods keep coming while no tag can be made: the pause is the scenario
    rollout.run(2)
    assert_exactly_tagged(world, rollout.pods, timeout=180)
