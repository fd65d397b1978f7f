"""Benchmark of the inventory pass: the listener's memory and time with 1,000 and then 20,000 running pods.

1. The fake API server (in this process) holds N running pods over 20 namespaces: each pod runs one of
   200 images at one of 3 digests per image, with an init container (a kubelet-written imageID each).
2. A child process (the listener's side alone, so the server's own copy of the pods is not counted)
   opens a SQLite store and runs one inventory pass (`listener.inventory.Inventory.run_once`: the
   paginated LIST, 500 pods per page, the tally, the store writes, the pass), then one bare paginated
   LIST of the same pods that keeps nothing (the anchor: what listing alone costs).
3. Measured at 1,000 pods, then again at 20,000: RSS after the pass and its peak (VmHWM).

Goal (issue 13): listener RSS growth <= 30 MB from 1,000 to 20,000 running pods. The figure checked
is the growth of the PEAK, the stricter one: pages are freed after use, so RSS after the pass says less.
The exit code is 1 when the goal is missed (bench/report.py keeps the figures and says so).

Run: `.venv/bin/python bench/inventory.py [--pods N] [--small N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.kubeapi import FakeKubeAPI  # noqa: E402

RSS_GROWTH_MB = 30  # peak, from --small to --pods running pods
NAMESPACES = 20
IMAGES = 200
DIGESTS_PER_IMAGE = 3

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from listener.inventory import Inventory
from listener.kube import KubeClient, load_config
from listener.metrics import ListenerMetrics
from pulltag.config import Settings
from pulltag.store import open_store

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

kube = KubeClient(load_config({kubeconfig!r}))
store = open_store({store!r})
inventory = Inventory(Settings(), store, kube, ListenerMetrics())
start_rss, _ = status()
started = time.perf_counter()
done = inventory.run_once()
pass_s = time.perf_counter() - started
rss, hwm = status()
started = time.perf_counter()
listed = sum(1 for _ in kube.list_pods(limit=500))
list_s = time.perf_counter() - started
entries = len(store.inventory())
print(json.dumps(dict(start_rss=start_rss, rss=rss, hwm=hwm, pass_s=pass_s, list_s=list_s, listed=listed,
                      digests=done.digests if done else -1, entries=entries)), flush=True)
"""


def digest(image: int, version: int) -> str:
    return "sha256:" + f"{image:08x}{version:08x}".ljust(64, "0")


def running_pod(i: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(namespace, pod, its status as the kubelet writes it)."""
    namespace = f"team-{i % NAMESPACES}"
    image, version = i % IMAGES, (i // IMAGES) % DIGESTS_PER_IMAGE
    repo = f"registry.example.com/team/app-{image}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"app-{image}-{i:06d}",
            "namespace": namespace,
            "labels": {"app": f"app-{image}"},
        },
        "spec": {
            "nodeName": f"node-{i % 50}",
            "initContainers": [{"name": "init", "image": "registry.example.com/base/init:1"}],
            "containers": [{"name": "app", "image": f"{repo}:v{version}"}],
        },
    }
    started = "2026-11-26T10:15:02Z"
    status = {
        "phase": "Running",
        "initContainerStatuses": [
            {
                "name": "init",
                "image": "registry.example.com/base/init:1",
                "imageID": f"registry.example.com/base/init@{digest(999_999, 0)}",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": started}},
                "ready": True,
                "restartCount": 0,
            }
        ],
        "containerStatuses": [
            {
                "name": "app",
                "image": f"{repo}:v{version}",
                "imageID": f"{repo}@{digest(image, version)}",
                "state": {"running": {"startedAt": started}},
                "ready": True,
                "started": True,
                "restartCount": 0,
                "containerID": f"containerd://{i:064x}",
            }
        ],
    }
    return namespace, pod, status


def fill(api: FakeKubeAPI, start: int, stop: int) -> None:
    for i in range(start, stop):
        namespace, pod, status = running_pod(i)
        created = api.create("pods", pod, namespace)
        created["status"] = status
        api.update_status("pods", created, namespace)


def child(kubeconfig: str, store: str) -> dict[str, Any]:
    code = CHILD.format(root=str(ROOT), kubeconfig=kubeconfig, store=store)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def expected_digests(pods: int) -> int:
    app = {(i % IMAGES, (i // IMAGES) % DIGESTS_PER_IMAGE) for i in range(pods)}
    return len(app) + 1  # and the init image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="pulltag-bench-inventory-")
    with FakeKubeAPI(compaction_window=4 * args.pods + 1000, bookmark_interval=60.0) as api:
        kubeconfig = api.write_kubeconfig(os.path.join(tmp, "kubeconfig"))
        for n in range(NAMESPACES):
            api.create("namespaces", {"metadata": {"name": f"team-{n}"}})
        results = {}
        for size, start in ((args.small, 0), (args.pods, args.small)):
            started = time.perf_counter()
            fill(api, start, size)
            print(
                f"{size:,} running pods in the fake API server ({time.perf_counter() - started:.1f}s to add)"
            )
            r = results[size] = child(kubeconfig, f"sqlite:///{tmp}/store-{size}.db")
            assert r["listed"] == size and r["digests"] == expected_digests(size), r
            ratio = r["pass_s"] / r["list_s"]
            print(
                f"  pass: {r['pass_s']:.2f}s, {r['digests']} digests, {r['entries']} entries; "
                f"bare list: {r['list_s']:.2f}s (ratio {ratio:.2f}); RSS {r['start_rss'] / 1024:.1f} MB "
                f"at start, {r['rss'] / 1024:.1f} MB after, peak {r['hwm'] / 1024:.1f} MB"
            )
    small, big = results[args.small], results[args.pods]
    growth = (big["hwm"] - small["hwm"]) / 1024
    rss_growth = (big["rss"] - small["rss"]) / 1024
    goal = f"peak RSS growth <= {RSS_GROWTH_MB} MB from {args.small:,} to {args.pods:,} pods"
    met = growth <= RSS_GROWTH_MB
    print(f"peak RSS growth: {growth:.1f} MB (after the pass: {rss_growth:.1f} MB)")
    print(f"goal: {goal}: {'OK' if met else 'GOAL MISSED'}")
    if args.json:
        report = {
            "pods": args.pods,
            "small": args.small,
            "peak_small_mb": round(small["hwm"] / 1024, 1),
            "peak_big_mb": round(big["hwm"] / 1024, 1),
            "peak_growth_mb": round(growth, 1),
            "rss_growth_mb": round(rss_growth, 1),
            "pass_s": round(big["pass_s"], 2),
            "bare_list_s": round(big["list_s"], 2),
            "ratio_pass_vs_list": round(big["pass_s"] / big["list_s"], 2),
            "digests": big["digests"],
            "goals": {goal: met},
        }
        print(json.dumps(report, sort_keys=True))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
