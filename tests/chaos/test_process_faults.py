"""The listener SIGKILLed in the middle of tagging, again and again; two replicas with the Lease flapping."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import Rollout, assert_exactly_tagged, every, sized
from tests.chaos.conftest import MakeWorld

pytestmark = pytest.mark.timeout(900)


def test_listener_sigkilled_mid_tag_repeatedly(make_world: MakeWorld) -> None:
    world = make_world(registry_proxy=True)
    proxy = world.proxy
    assert proxy is not None and world.listener is not None
    # creating a tag takes a second: each kill lands while a tag is in flight (sent, or about to be)
    proxy.delay(1.0, method="PUT")
    # A new digest with every pod: each round has a tag to create, so a PUT comes to kill the listener in
    # (with shared digests a round could bring none and the wait below depended on leftover work).
    rollout = Rollout(world, new_version_every=1)
    kills = int(sized(8, 20))
    for i in range(kills):
        rollout.run(0.5)
        world.wait_for(lambda: proxy.in_flight("PUT") > 0, 60, "a tag in flight")
        world.listener.kill()
        world.start_listener_process(wait_ready=i % 2 == 0)  # sometimes killed again before it is ready
        assert world.listener is not None
    proxy.delay(0)
    rollout.run(1)
    assert_exactly_tagged(world, rollout.pods, timeout=240)


def test_two_replicas_with_the_lease_flapping(make_world: MakeWorld) -> None:
    world = make_world()
    world.start_listener_process("listener-b")
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/pulltag-system/leases/pulltag-listener"
    rounds = iter(range(10**6))

    def flap() -> None:
        n = next(rounds)
        if n % 3 == 2:
            # lease requests fail for a while: the leader cannot renew and steps down
            world.api.fail_requests(share=0.8, status=500, path_contains="leases")
        else:
            world.api.clear_faults()
            status, _ = world.api_request("DELETE", lease_path)
            assert status in (200, 404), status

    with every(1.5, flap) as errors:
        rollout = Rollout(world)
        rollout.run(sized(12, 90))
    world.api.clear_faults()
    assert not errors
    assert_exactly_tagged(world, rollout.pods, timeout=180)
    holders = {
        (lease.get("spec") or {}).get("holderIdentity")
        for lease in [world.api.try_get("leases", "pulltag-listener", "pulltag-system")]
        if lease
    }
    assert holders
