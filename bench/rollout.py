"""Benchmark: a rollout of 2,000 pods over 50 images through the whole chain, against the same rollout
with no pulltag at all, measured in the same run.

One World (tests/harness/world.py: fake API server with the manifests' RBAC and webhook configurations,
the webhook under gunicorn over TLS, a real redis-server, the real token-auth docker-registry, the
simulated kubelet running every pod in the background):

1. anchor: both WebhookConfigurations removed and no listener: 2,000 pods are created through the API
   (the ReplicaSet controller's slow-start batches 1, 2, 4, ... 500, each batch concurrently) over 50
   images; the time until the kubelet has every pod Running;
2. pulltag: the configurations back and the listener started; the same rollout over 50 other images;
   the time until every pod runs and every digest carries its tag (scope image: 50 tags).

Also: the registry requests the listener sent (every HTTP request to the registry or its token server,
token requests included, counted by a recording proxy the listener goes through; its other traffic through
the proxy is not counted) against the protocol minimum of 3 per new tag
(bench/registry.py), and the peak RSS (VmHWM) of the webhook's process group (gunicorn master + workers)
and of the listener, after the rollout against right after start.

Waiting costs nothing measurable: the fake API server counts pods per phase as it writes them
(tests/harness/kubeapi/store.py `wait_phase`), and the benchmark sleeps on the server's condition variable
until the count is reached, instead of listing (deep-copying) every pod on each look under the same GIL as
the server and the kubelet it waits for. The tags are counted by the listener (its /metrics counter).

`--hog` runs one busy process (a pure-Python loop) beside the whole run: the ratio to the anchor should
move little, because the anchor pays the same extra load.

    .venv/bin/python bench/rollout.py [--pods 2000] [--images 50] [--hog] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, speed  # noqa: E402
from tests.harness.procs import ManagedProcess  # noqa: E402
from tests.harness.world import World  # noqa: E402
from tests.security.wire import RecordingProxy  # noqa: E402

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# Under its name claim the tagger sends: the tag listing (which also shows the name is free), GET manifest,
# PUT manifest. A token per new repository comes on top (the goal of issue 13: <= 210 for 50 tags).
PROTOCOL_MINIMUM_PER_TAG = 3


def slow_start(total: int) -> list[int]:
    """The ReplicaSet controller's batch sizes: 1, 2, 4, ... capped at 500, summing to `total`."""
    sizes, size, left = [], 1, total
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
        size = min(size * 2, 500)
    return sizes


def create_pods(world: World, namespace: str, images: list[str], total: int) -> None:
    def create(i: int) -> None:
        image = images[i % len(images)]
        owner = f"app{i % len(images)}-5c8f7b"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{owner}-",
                "namespace": namespace,
                "labels": {"app": owner},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": f"rs-{owner}",
                     "controller": True, "blockOwnerDeletion": True}
                ],
            },
            "spec": {"containers": [{"name": "app", "image": image}]},
        }  # fmt: skip
        world.api.create("pods", body, namespace, admit=True)

    done = 0
    with ThreadPoolExecutor(8) as pool:
        for size in slow_start(total):
            list(pool.map(create, range(done, done + size)))
            done += size


def wait_running(world: World, namespace: str, pods: int, timeout: float, what: str) -> None:
    """Sleep on the fake API server's condition until `pods` pods of `namespace` are Running."""
    if not world.api.store.wait_phase("pods", namespace, "Running", pods, timeout):
        running = world.api.store.count_phase("pods", namespace, "Running")
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} ({running}/{pods} running)")


def start_hog(workdir: Path) -> ManagedProcess:
    """One busy process (a pure-Python loop) for as long as the benchmark runs."""
    argv = [sys.executable, "-c", "while True: pass"]
    return ManagedProcess("hog", argv, workdir / "hog").start()


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)  # polling interval of the measurement, not synchronisation


def group_hwm_kb(pgid: int) -> dict[int, int]:
    """VmHWM (peak RSS, kB) of every live process in the process group."""
    peaks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rpartition(")")[2].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[int(entry)] = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return peaks


def registry_requests(lines: list[str], hosts: set[str]) -> int:
    """The recorded request lines (`GET http://host:port/path HTTP/1.1`) sent to one of `hosts`: the
    registry and its token server. The listener's other plain-HTTP traffic that also takes the proxy
    (its own /metrics and /readyz, asked by the harness) is not registry cost."""
    return sum(1 for line in lines if urlsplit(line.split(" ")[1] if " " in line else "").netloc in hosts)


def push_images(world: World, stem: str, count: int) -> tuple[list[str], list[str]]:
    repos = [f"bench/{stem}-{n}" for n in range(count)]
    return repos, [world.push(repo, "1") for repo in repos]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase (seconds)")
    parser.add_argument("--hog", action="store_true", help="run one busy process beside the benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    proxy = RecordingProxy().start()
    with tempfile.TemporaryDirectory(prefix="pulltag-bench-rollout-") as tmp:
        hog = start_hog(Path(tmp)) if args.hog else None
        machine = speed()
        world = World(Path(tmp) / "world", start_listener=False, with_harbor=False)
        world.start()
        try:
            for ns in ("anchor", "rollout"):
                world.api.create("namespaces", {"metadata": {"name": ns}})
            assert world.webhook.process is not None and world.webhook.process.proc is not None
            webhook_pgid = world.webhook.process.proc.pid
            webhook_idle = group_hwm_kb(webhook_pgid)

            # 1. anchor: no webhooks, no listener
            # The admission chain's own configurations (their caBundle as set for this world), put back
            # as they were for phase 2: the rendered objects may carry another caBundle (or none).
            chain = world.api.admission
            configurations = [
                {**copy.deepcopy(obj), "kind": kind}
                for kind, confs in (("MutatingWebhookConfiguration", chain.mutating),
                                    ("ValidatingWebhookConfiguration", chain.validating))
                for obj in confs.values()
            ]  # fmt: skip
            assert {o["kind"] for o in configurations} == set(WEBHOOK_KINDS), "no webhooks to take away"
            for obj in configurations:
                chain.remove(obj["kind"], obj["metadata"]["name"])
            _, anchor_images = push_images(world, f"anchor-{uuid.uuid4().hex[:4]}", args.images)
            started = time.monotonic()
            create_pods(world, "anchor", anchor_images, args.pods)
            anchor_created = time.monotonic() - started
            wait_running(world, "anchor", args.pods, args.timeout, "the anchor's pods to run")
            anchor_seconds = time.monotonic() - started

            # 2. pulltag: webhooks back, the listener (its registry traffic through the recording proxy)
            for obj in configurations:
                chain.load(obj)
            saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")}
            os.environ.update(HTTP_PROXY=proxy.url, http_proxy=proxy.url, NO_PROXY="", no_proxy="")
            try:
                world.start_listener_process()
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            assert world.listener is not None and world.listener.proc is not None
            listener_idle = group_hwm_kb(world.listener.proc.pid)
            repos, images = push_images(world, f"rollout-{uuid.uuid4().hex[:4]}", args.images)
            token_server = world.registry.token_server
            assert token_server is not None
            registry_hosts = {world.registry.host, urlsplit(token_server.realm).netloc}
            records_before = len(proxy.records())
            created_before = world.metric("pulltag_tags_total", outcome="created")
            started = time.monotonic()
            create_pods(world, "rollout", images, args.pods)
            pulltag_created = time.monotonic() - started
            wait_running(world, "rollout", args.pods, args.timeout, "the rollout's pods to run")
            pods_running = time.monotonic() - started
            wait(
                lambda: world.metric("pulltag_tags_total", outcome="created") >= created_before + args.images,
                args.timeout,
                "every digest to be tagged",
            )
            last_tag = time.monotonic() - started
            wait(lambda: world.metric("pulltag_queue_depth") == 0, 60, "the listener to go idle")
            requests = registry_requests(proxy.records()[records_before:], registry_hosts)
            untagged = [
                r for r in repos if not any(t.startswith("deployed_") for t in world.registry.list_tags(r))
            ]
            admitted = len(world.admissions())
            webhook_peak = group_hwm_kb(webhook_pgid)
            listener_peak = group_hwm_kb(world.listener.proc.pid)
        finally:
            world.stop()
            proxy.stop()
            if hog is not None:
                hog.stop()
    if proxy.failed:
        print(f"  proxy: {len(proxy.failed)} requests found no upstream, e.g. {proxy.failed[0]}")

    result: dict[str, Any] = {
        "pods": args.pods,
        "images": args.images,
        "cpus": os.cpu_count(),
        "hog": args.hog,
        **machine,
        "anchor_create_s": round(anchor_created, 2),
        "anchor_all_running_s": round(anchor_seconds, 2),
        "pulltag_create_s": round(pulltag_created, 2),
        "pulltag_all_running_s": round(pods_running, 2),
        "pulltag_last_tag_s": round(last_tag, 2),
        "ratio_last_tag_vs_anchor": round(last_tag / anchor_seconds, 3),
        "ratio_create_vs_anchor": round(pulltag_created / anchor_created, 3),
        "admission_records": admitted,
        "untagged_repositories": len(untagged),
        "registry_requests": requests,
        "registry_requests_minimum": PROTOCOL_MINIMUM_PER_TAG * args.images,
        "ratio_registry_requests": round(requests / (PROTOCOL_MINIMUM_PER_TAG * args.images), 3),
        "webhook_processes": len(webhook_peak),
        "webhook_idle_hwm_mb": round(sum(webhook_idle.values()) / 1024, 1),
        "webhook_peak_hwm_mb": round(sum(webhook_peak.values()) / 1024, 1),
        "webhook_max_process_hwm_mb": round(max(webhook_peak.values(), default=0) / 1024, 1),
        "listener_idle_hwm_mb": round(sum(listener_idle.values()) / 1024, 1),
        "listener_peak_hwm_mb": round(sum(listener_peak.values()) / 1024, 1),
    }
    hog_note = ", beside one busy process (--hog)" if args.hog else ""
    print(f"rollout of {args.pods} pods over {args.images} images, {os.cpu_count()} CPUs{hog_note}")
    print(f"  {describe(machine)} (measured at start{', with the hog running' if args.hog else ''})")
    print(f"  anchor (no pulltag): created in {anchor_created:.1f}s, all running after {anchor_seconds:.1f}s")
    print(
        f"  pulltag: created in {pulltag_created:.1f}s, all running after {pods_running:.1f}s, "
        f"last tag after {last_tag:.1f}s (ratio to anchor {last_tag / anchor_seconds:.2f})"
    )
    print(
        f"  registry requests: {requests} for {args.images} tags "
        f"(protocol minimum {result['registry_requests_minimum']}, "
        f"ratio {result['ratio_registry_requests']:.2f})"
    )
    print(
        f"  peak RSS: webhook group {result['webhook_peak_hwm_mb']} MB over {len(webhook_peak)} processes "
        f"(idle {result['webhook_idle_hwm_mb']} MB), listener {result['listener_peak_hwm_mb']} MB "
        f"(idle {result['listener_idle_hwm_mb']} MB)"
    )
    if untagged:
        print(f"  UNTAGGED: {len(untagged)} repositories")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 1 if untagged else 0


if __name__ == "__main__":
    sys.exit(main())
