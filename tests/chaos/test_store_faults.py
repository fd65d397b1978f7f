"""Redis (password-protected) killed and restarted, empty, during admissions and during tagging. The webhook
keeps admitting pods within its time budget while Redis is down; after recovery no tag is lost: the
listener confirms pulls against the pod's annotation when the admission record is missing."""

from __future__ import annotations

import threading

import pytest

from tests.chaos.chaos import REDIS_PASSWORD, Rollout, assert_exactly_tagged, sized
from tests.chaos.conftest import MakeWorld

pytestmark = pytest.mark.timeout(600)


def test_redis_killed_during_admissions_and_tagging(make_world: MakeWorld) -> None:
    world = make_world(redis_password=REDIS_PASSWORD, registry_proxy=True)
    assert world.redis is not None and world.proxy is not None
    rollout = Rollout(world)
    rollout.run(1.5)
    for _ in range(int(sized(2, 8))):
        # during admissions: pods are created (and admitted) while Redis is down
        world.redis.kill()
        down = len(rollout.pods)
        rollout.run(sized(3, 5))
        assert len(rollout.pods) > down
        world.redis.restart()
        # during tagging: a slow registry keeps tags in flight when Redis dies again
        world.proxy.delay(0.5)
        rollout.run(1)
        world.redis.kill()
        threading.Event().wait(1.5)  # Redis stays down for a while: the pause is the scenario
        world.redis.restart()
        world.proxy.delay(0)
    rollout.run(1)
    assert_exactly_tagged(world, rollout.pods, timeout=180)
    # pods created while Redis was down have no admission record: they were confirmed by annotation
    recorded = {r.uid for r in world.admissions()}
    assert any(p.uid not in recorded for p in rollout.pods)
