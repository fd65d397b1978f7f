"""Benchmark of the listener's event path, against plain `json.loads` measured in the same run.

1. 50,000 Pulled events are created in the fake API server and streamed once over HTTPS as a watch
   (resourceVersion=0: every event as ADDED); the raw lines are kept.
2. Over those same bytes: plain `json.loads` per line (the anchor), then the listener's path (the
   informer's line handling: decode, resourceVersion tracking, event counting, `parse_pull`, queue put),
   each item then taken off the queue as the listener's consumer takes it.
3. The listener's informer runs in a child process against the API server with 1,000 and then 50,000
   events in the cluster (list, then watch); its RSS once synced.

Goals. The informer watches only `reason=Pulled` events, so they arrive at pod-start rate: a 5,000-node
cluster starting 150 pods/s with 3 containers each sends ~450 events/s. The path is plain (one
`json.loads` per line, one parser), and must stay
- at >= 0.25x the anchor's events/s (decoding, parsing and queueing cost at most four bare decodes),
- at >= 20,000 events/s (>= 40x that peak),
- with RSS growth <= 20 MB from 1,000 to 50,000 events (nothing kept per event).
The exit code is 1 when a goal is missed (bench/report.py keeps the figures and says so).

Run: `.venv/bin/python bench/listener.py [--events N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.informer import Informer, InformerOptions  # noqa: E402
from listener.kube import KubeClient, load_config  # noqa: E402
from listener.main import transform_event  # noqa: E402
from listener.metrics import ListenerMetrics  # noqa: E402
from tests.harness.kubeapi import FakeKubeAPI  # noqa: E402

RATIO_GOAL = 0.25  # x a bare json.loads of the same lines
RATE_GOAL = 20_000  # events/s
RSS_GROWTH_MB = 20  # from 1,000 to --events events

CHILD = r"""
import queue, sys, threading, time
sys.path.insert(0, {root!r})
from listener.informer import Informer, InformerOptions
from listener.kube import KubeClient, load_config
from listener.main import transform_event
from listener.metrics import ListenerMetrics
out = queue.Queue(1000)
count = 0
def drain():
    global count
    while True:
        out.get(); count += 1
threading.Thread(target=drain, daemon=True).start()
informer = Informer(KubeClient(load_config({kubeconfig!r})), out, transform_event, ListenerMetrics(),
                    InformerOptions())
informer.start()
informer.synced.wait(600)
deadline = time.monotonic() + 600
while count < {expected} and time.monotonic() < deadline:
    time.sleep(0.05)
fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]), count, flush=True)
informer.stop()
"""


def pulled_event(i: int, namespace: str = "default") -> dict[str, object]:
    pod = f"web-{i // 3}"
    stamp = "2026-11-26T10:15:02Z"
    image = f"registry.example.com/team/app-{i % 50}:v{i % 7}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod}.{i:016x}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": namespace,
            "name": pod,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": "1234",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "Pulled",
        "message": f'Successfully pulled image "{image}" in 1.234s (1.5s including waiting). '
        "Image size: 12345678 bytes.",
        "source": {"component": "kubelet", "host": f"node-{i % 20}"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": "Normal",
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": f"node-{i % 20}",
    }


def fill(api: FakeKubeAPI, start: int, stop: int) -> None:
    for i in range(start, stop):
        api.create("events", pulled_event(i), "default")


def capture_stream(kube: KubeClient, expected: int) -> list[bytes]:
    """The raw lines of one watch from resourceVersion 0 (every event as ADDED)."""
    params: dict[str, str | int] = {
        "fieldSelector": "reason=Pulled",
        "resourceVersion": "0",
        "timeoutSeconds": 600,
    }
    stream = kube.watch("/api/v1/events", params, read_timeout=60)
    lines: list[bytes] = []
    for line in stream.lines():
        if line:
            lines.append(line)
            if len(lines) >= expected:
                break
    stream.close()
    return lines


def anchor(lines: list[bytes]) -> float:
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    return len(lines) / (time.perf_counter() - started)


def listener_path(kube: KubeClient, lines: list[bytes]) -> float:
    out: queue.Queue[object] = queue.Queue()
    informer: Informer[object] = Informer(kube, out, transform_event, ListenerMetrics(), InformerOptions())
    handle = informer._handle_line  # the informer's per-line work, exactly as on the watch thread
    # Each item is taken off the queue as it comes, as the listener's consumer does (its cost is counted
    # here). A queue left to fill keeps every result alive, which the listener never does: over 50,000
    # events that set off ~70 garbage collections (none when drained), the full ones walking this
    # process's whole heap, the fake API server's events included.
    take = out.get_nowait
    delivered = 0
    started = time.perf_counter()
    for line in lines:
        handle(line)
        take()
        delivered += 1
    rate = len(lines) / (time.perf_counter() - started)
    assert delivered == len(lines) and out.empty()
    return rate


def parse_only(lines: list[bytes]) -> float:
    """parse_pull alone over pre-decoded events: the share of the path that is pure parsing."""
    objects = [json.loads(line)["object"] for line in lines]
    started = time.perf_counter()
    for obj in objects:
        transform_event("ADDED", obj)
    return len(objects) / (time.perf_counter() - started)


def child_rss(kubeconfig: str, expected: int) -> tuple[int, int]:
    code = CHILD.format(root=str(ROOT), kubeconfig=kubeconfig, expected=expected)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True
    )
    rss, hwm, count = (int(x) for x in done.stdout.split())
    assert count >= expected, (count, expected)
    return rss, hwm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args()
    with FakeKubeAPI(compaction_window=args.events * 2 + 1000, bookmark_interval=60.0) as api:
        kubeconfig = api.write_kubeconfig(os.path.join(tempfile.mkdtemp(), "kubeconfig"))
        kube = KubeClient(load_config(kubeconfig))

        fill(api, 0, args.small)
        small_rss, small_hwm = child_rss(kubeconfig, args.small)

        started = time.perf_counter()
        fill(api, args.small, args.events)
        print(f"created {args.events - args.small} more events in {time.perf_counter() - started:.1f}s")
        lines = capture_stream(kube, args.events)
        size = sum(len(line) for line in lines)
        print(f"captured {len(lines)} watch lines, {size / len(lines):.0f} bytes each on average")
        json_rate, path_rate, parse_rate = [], [], []
        for _ in range(3):  # best of three, alternating, so both see the same machine state
            json_rate.append(anchor(lines))
            path_rate.append(listener_path(kube, lines))
            parse_rate.append(parse_only(lines))
        best_json, best_path = max(json_rate), max(path_rate)
        per_event = {
            "json.loads": 1e6 / best_json,
            "parse_pull": 1e6 / max(parse_rate),
            "whole path": 1e6 / best_path,
        }
        print("per event: " + ", ".join(f"{k} {v:.1f} us" for k, v in per_event.items()))
        ratio = best_path / best_json
        print(f"json.loads anchor:        {best_json:12,.0f} events/s")
        print(f"listener path (to queue): {best_path:12,.0f} events/s")
        goals: dict[str, bool] = {}
        check(goals, f"ratio >= {RATIO_GOAL}", f"ratio: {ratio:.2f}", ratio >= RATIO_GOAL)
        check(goals, f"events/s >= {RATE_GOAL:,}", f"rate: {best_path:,.0f} events/s", best_path >= RATE_GOAL)

        big_rss, big_hwm = child_rss(kubeconfig, args.events)
        growth = (big_rss - small_rss) / 1024
        print(f"listener RSS, {args.small:,} events: {small_rss / 1024:.1f} MB (peak {small_hwm / 1024:.1f})")
        print(f"listener RSS, {args.events:,} events: {big_rss / 1024:.1f} MB (peak {big_hwm / 1024:.1f})")
        check(goals, f"RSS growth <= {RSS_GROWTH_MB} MB", f"growth: {growth:.1f} MB", growth <= RSS_GROWTH_MB)
        missed = [goal for goal, met in goals.items() if not met]
        print("goals: " + ("all met" if not missed else "MISSED " + "; ".join(missed)))
        if args.json:
            report = {
                "events": args.events,
                "json_loads_per_s": round(best_json),
                "listener_path_per_s": round(best_path),
                "ratio": round(ratio, 3),
                "rss_small_mb": round(small_rss / 1024, 1),
                "rss_big_mb": round(big_rss / 1024, 1),
                "rss_growth_mb": round(growth, 1),
                "goals": goals,
            }
            print(json.dumps(report, sort_keys=True))
    return 1 if missed else 0


def check(goals: dict[str, bool], goal: str, figure: str, met: bool) -> None:
    """Print a figure beside its goal, and note whether the goal is met."""
    goals[goal] = met
    print(f"{figure} (goal: {goal}) {'OK' if met else 'GOAL MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
