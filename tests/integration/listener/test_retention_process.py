"""Release passes run by the listener itself: only the leader of two replicas runs them, and a listener
SIGKILLed in the middle of a pass, then restarted, releases nothing twice and nothing wrong."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from listener.leader import ElectionTiming, LeaseElector
from listener.main import Listener
from listener.metrics import ListenerMetrics
from pulltag.config import RetentionSettings
from pulltag.store import LedgerEntry, open_store
from pulltag.store.base import ledger_image
from tests.harness.dockerconfig import Credentials, write_docker_config
from tests.harness.faultproxy import FaultProxy
from tests.harness.harbor import HARBOR_PASSWORDS, FakeHarbor
from tests.harness.procs import free_port
from tests.integration.listener.helpers import Env, wait_for

FAST = ElectionTiming(lease_seconds=3, renew_deadline=2, retry_period=0.2)
DAY = 86400.0


def passes(metrics: ListenerMetrics) -> float:
    """Release passes of any outcome this listener ran."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "pulltag_retention_passes"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


class Replica:
    def __init__(self, env: Env, identity: str) -> None:
        settings = env.settings(env.redis_url)
        settings = replace(settings, retention=RetentionSettings(enabled=True, interval_seconds=0.2))
        self.store = open_store(settings.store.url)
        self.listener = Listener(settings, env.kube(), self.store, ListenerMetrics(), identity=identity)
        self.elector = LeaseElector(env.kube(), "default", identity, timing=FAST)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.elector.run, args=(self.listener.start, self.listener.stop, self.stop), daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        self.thread.join(10)
        self.store.close()


def test_with_two_replicas_only_the_leader_runs_passes(env: Env) -> None:
    a, b = Replica(env, "replica-a"), Replica(env, "replica-b")
    try:
        wait_for(lambda: passes(a.listener.metrics) + passes(b.listener.metrics) >= 3, what="three passes")
        leader, follower = (a, b) if a.elector.leading.is_set() else (b, a)
        assert passes(follower.listener.metrics) == 0
        # The follower runs passes once it leads (so its zero above is not a broken follower).
        leader.close()
        wait_for(lambda: passes(follower.listener.metrics) >= 1, timeout=15, what="the new leader's pass")
    finally:
        a.close()
        b.close()


@pytest.fixture
def slow_harbor(fake_harbor: FakeHarbor) -> Iterator[tuple[FakeHarbor, FaultProxy]]:
    proxy = FaultProxy(fake_harbor.host).start()
    yield fake_harbor, proxy
    proxy.stop()


def start_listener(env: Env, config: Path, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    environ = dict(os.environ, KUBECONFIG=env.kubeconfig)
    environ.pop("KUBERNETES_SERVICE_HOST", None)
    argv = [sys.executable, "-m", "pulltag", "listener", "--config", str(config), "--no-leader-election"]
    argv += ["--metrics-bind", f"127.0.0.1:{free_port()}"]
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(argv, env=environ, stdout=log, stderr=subprocess.STDOUT)


def test_sigkill_mid_pass_then_restart_releases_nothing_twice_and_nothing_wrong(
    env: Env, slow_harbor: tuple[FakeHarbor, FaultProxy], tmp_path: Path
) -> None:
    harbor, proxy = slow_harbor
    repo = harbor.new_repository("team/app")
    old = harbor.seed_image(repo, "v1")
    running = harbor.seed_image(repo, "v2")
    image = ledger_image(f"{proxy.host}/{repo}")
    stale = [f"deployed_apps_20260101-{n:06d}" for n in range(40)]
    kept = "deployed_apps_20260201-000000"
    store = open_store(env.redis_url)
    then = time.time() - 30 * DAY
    for tag, digest in [*((t, old) for t in stale), (kept, running)]:
        harbor.set_tag(repo, tag, digest)
        store.append_ledger(LedgerEntry(image, digest, tag, env.namespace, "web", "n", then, then, "created"))
    pod = env.pod("web-running", f"{proxy.host}/{repo}:v2")
    env.run(pod, running)

    creds = write_docker_config(
        tmp_path / "creds.json", {proxy.host: Credentials("robot$pulltag", HARBOR_PASSWORDS["robot$pulltag"])}
    )
    config: dict[str, Any] = {
        "store": {"url": env.redis_url},
        "registries": [{"host": proxy.host, "type": "harbor", "insecure": True, "credentials": str(creds)}],
        "retention": {"enabled": True, "interval_seconds": 0.5, "keep_last": 0, "grace_hours": 0},
        "listener": {"catch_up": False, "inventory_interval_seconds": 5},
    }
    path = tmp_path / "pulltag.yaml"
    path.write_text(yaml.safe_dump(config))

    def released() -> list[str]:
        return [e.tag for e in store.query_ledger(image=image, limit=1000) if e.outcome == "released"]

    proxy.delay(0.15, method="DELETE")  # a pass takes seconds: time to kill it in the middle
    first = start_listener(env, path, tmp_path, "first")
    try:
        wait_for(lambda: len(released()) >= 3, timeout=60, what="the first releases")
        first.kill()
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert len(released()) < len(stale), "the pass ended before the kill: nothing tested"
    proxy.clear()
    second = start_listener(env, path, tmp_path, "second")
    try:
        wait_for(lambda: len(released()) == len(stale), timeout=60, what="every stale tag released")
    finally:
        second.terminate()
        second.wait(30)
    counts = collections.Counter(released())
    assert counts == collections.Counter(stale)  # each exactly once
    assert harbor.tags_of(repo, old) == ["v1"]
    assert harbor.tags_of(repo, running) == sorted([kept, "v2"])
    store.close()
