"""No test password (registry users, Harbor accounts and robots, the Redis password) appears in the output
of any process while the faults that make processes name their store and registry happen: Redis killed
(store errors name the Redis URL, which carries the password) and the registry failing and unreachable
(registry errors, retries and token handshakes). Self-contained: it runs its own world and reads its own
logs, so it checks the same thing alone, filtered or in any order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.chaos.chaos import REDIS_PASSWORD, Rollout, assert_exactly_tagged, chaos_world, secrets

pytestmark = pytest.mark.timeout(600)


def test_no_secret_appears_in_the_logs_of_a_world_under_faults(tmp_path: Path) -> None:
    log_file = tmp_path / "process-logs.txt"
    with chaos_world(
        tmp_path / "world", log_file, redis_password=REDIS_PASSWORD, registry_proxy=True
    ) as world:
        assert world.redis is not None and world.proxy is not None
        rollout = Rollout(world)
        rollout.run(1)
        world.redis.kill()
        rollout.run(2)  # the webhook and the listener report the store they cannot reach
        world.redis.restart()
        world.proxy.fail(0.5, (500, 503, 401), retry_after=1)
        rollout.run(2)
        world.proxy.clear()
        with world.proxy.down():
            rollout.run(1)
            threading.Event().wait(1)  # the registry stays unreachable a while: the pause is the scenario
        rollout.run(1)
        assert_exactly_tagged(world, rollout.pods, timeout=180)
        injected = world.proxy.stats.injected
    # the logs are complete only once the world stopped (shutdown lines included)
    logs = log_file.read_text(errors="replace")
    leaks = [what for what, secret in secrets().items() if secret in logs]
    assert not leaks, f"{log_file}: the {', '.join(leaks)} password(s) appear in the process logs"
    # and the faults really made the processes talk about what carries the secrets
    assert injected >= 1
    assert "store unavailable" in logs, "no process reported the dead store: the scenario did not happen"
    assert ":***@" in logs, "the store URL was never named, so its redaction was not exercised"
