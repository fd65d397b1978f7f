"""Leader election on the Lease, and `pulltag listener` as a process: health endpoints, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests
import yaml

from listener.leader import ElectionTiming, LeaseElector
from tests.harness.procs import free_port
from tests.integration.listener.helpers import Env, wait_for

FAST = ElectionTiming(lease_seconds=3, renew_deadline=2, retry_period=0.2)


class Candidate:
    def __init__(self, env: Env, identity: str) -> None:
        self.elector = LeaseElector(env.kube(), "default", identity, timing=FAST)
        self.stop = threading.Event()
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self.elector.run, args=(self.started.set, self.stopped.set, self.stop), daemon=True
        )
        self.thread.start()


def test_one_leader_at_a_time_and_a_released_lease_passes_on_at_once(env: Env) -> None:
    a, b = Candidate(env, "a"), Candidate(env, "b")
    wait_for(lambda: a.elector.leading.is_set() or b.elector.leading.is_set(), what="a leader")
    leader, follower = (a, b) if a.elector.leading.is_set() else (b, a)
    assert not follower.elector.leading.is_set()
    lease = env.api.get("leases", "pulltag-listener", "default")
    assert lease["spec"]["holderIdentity"] == leader.elector.identity
    leader.stop.set()
    leader.thread.join(5)
    assert leader.stopped.is_set()
    # Released, so the follower takes over well within one lease duration.
    wait_for(lambda: follower.elector.leading.is_set(), timeout=FAST.lease_seconds, what="the takeover")
    lease = env.api.get("leases", "pulltag-listener", "default")
    assert lease["spec"]["holderIdentity"] == follower.elector.identity
    assert lease["spec"]["leaseTransitions"] >= 1
    follower.stop.set()
    follower.thread.join(5)
    assert env.api.get("leases", "pulltag-listener", "default")["spec"].get("holderIdentity", "") == ""


def test_a_leader_that_cannot_renew_steps_down(env: Env) -> None:
    a = Candidate(env, "a")
    wait_for(lambda: a.elector.leading.is_set(), what="leading")
    env.api.fail_requests(status=500, path_contains="/leases")
    wait_for(lambda: a.stopped.is_set(), timeout=5, what="stepping down")
    env.api.clear_faults()
    wait_for(lambda: a.elector.leading.is_set(), timeout=10, what="leading again")
    a.stop.set()
    a.thread.join(5)


def test_cli_serves_health_and_exits_0_on_sigterm(env: Env, tmp_path: Path) -> None:
    repository, digest, image = env.image()
    port = free_port()
    config = tmp_path / "pulltag.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"url": env.redis_url},
                "registries": [{"host": env.registry.host, "insecure": True}],
            }
        )
    )
    environ = dict(os.environ, KUBECONFIG=env.kubeconfig)
    environ.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pulltag",
            "listener",
            "--config",
            str(config),
            "--metrics-bind",
            f"127.0.0.1:{port}",
            "--namespace",
            "default",
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answers(path: str, status: int) -> bool:
        try:
            return requests.get(base + path, timeout=1).status_code == status
        except requests.ConnectionError:
            return False

    try:
        wait_for(lambda: answers("/readyz", 200), timeout=30, what="/readyz")
        assert answers("/healthz", 200)
        wait_for(lambda: env.api.try_get("leases", "pulltag-listener", "default"), what="the lease")
        pod = env.pod("cli-1", image)
        env.run(pod, digest)
        env.pulled(pod)
        wait_for(lambda: env.tags_on(repository, digest), timeout=30, what="the tag")
        metrics = requests.get(base + "/metrics", timeout=2).text
        assert 'pulltag_pulls_total{outcome="confirmed"} 1.0' in metrics
        assert 'pulltag_events_total{reason="Pulled"}' in metrics
        assert "pulltag_queue_depth" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "listener exited" in output, output[-2000:]
    lease = env.api.get("leases", "pulltag-listener", "default")
    assert lease["spec"].get("holderIdentity", "") == ""  # released on the way out
