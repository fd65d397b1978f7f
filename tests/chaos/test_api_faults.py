"""The API server answers 500 or 429 (with Retry-After) to 30 % of all requests during a rollout: the
listener's lists, watches, pod reads and Event posts, the Lease, and the rollout's own pod creations."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import Rollout, assert_exactly_tagged, every, sized
from tests.chaos.conftest import MakeWorld

pytestmark = pytest.mark.timeout(600)


def test_api_server_failing_30_percent_of_requests(make_world: MakeWorld) -> None:
    world = make_world()
    rollout = Rollout(world)
    statuses = iter(range(10**6))

    def switch() -> None:  # 500s and 429s (Retry-After: 1) in turns
        status = 429 if next(statuses) % 2 else 500
        world.api.fail_requests(share=0.3, status=status, retry_after=1 if status == 429 else None)

    switch()
    try:
        with every(2.0, switch) as errors:
            rollout.run(sized(12, 60))
        assert not errors
        # the pods' pulls are tagged while the faults go on
        assert_exactly_tagged(world, rollout.pods, timeout=180)
        failed = [r for r in world.api.requests() if r.status in (429, 500)]
        assert len(failed) >= 10
    finally:
        world.api.clear_faults()
    assert_exactly_tagged(world, rollout.pods)
