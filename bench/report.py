"""Run every benchmark and print one table: each figure beside its anchor (measured in the same run) and
the ratio. `make bench` runs this; BENCHMARKS.md holds a recorded run.

Each benchmark runs as its own process (bench/store.py, bench/registry.py, bench/webhook.py,
bench/listener.py, bench/rollout.py, bench/inventory.py) and ends with one JSON line, which is what
this script reads; their human-readable output goes to stderr here as it comes, so a long run shows
progress. The header states the machine's speed (bench/machine.py: json.loads of a fixed event and a
fixed pure-Python loop, per second), so runs from different days can be read side by side. Each
benchmark dies with this script (parent-death signal), and its servers die with it in turn
(tests/harness/procs.py).

    .venv/bin/python bench/report.py [--quick] [--only store,registry,...] [--hog]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, speed  # noqa: E402
from tests.harness.procs import die_with_parent  # noqa: E402

Row = tuple[
    str, str, float, str, float | None, float | None
]  # bench, figure, value, anchor, anchor value, ratio

# (name, argv after the interpreter, argv for --quick)
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("store", ["-P", "bench/store.py", "--seconds", "1.0"], ["-P", "bench/store.py", "--seconds", "0.3"]),
    ("registry", ["-m", "bench.registry", "--tags", "50"], ["-m", "bench.registry", "--tags", "10"]),
    (
        "webhook",
        ["-P", "bench/webhook.py", "--requests", "10000", "--paced-requests", "3000"],
        ["-P", "bench/webhook.py", "--requests", "2000", "--paced-requests", "1000"],
    ),
    (
        "listener",
        ["-P", "bench/listener.py", "--events", "50000"],
        ["-P", "bench/listener.py", "--events", "10000"],
    ),
    (
        "rollout",
        ["-P", "bench/rollout.py", "--pods", "2000", "--images", "50"],
        ["-P", "bench/rollout.py", "--pods", "200", "--images", "10"],
    ),
    (
        "inventory",
        ["-P", "bench/inventory.py", "--pods", "20000"],
        ["-P", "bench/inventory.py", "--pods", "5000"],
    ),
]
# webhook.py always ends with its JSON line
JSON_FLAG = {"store", "registry", "listener", "rollout", "inventory"}


def run(name: str, argv: list[str]) -> tuple[dict[str, Any], float]:
    command = [sys.executable, *argv] + (["--json"] if name in JSON_FLAG else [])
    print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(os.getpid(), signal.SIGTERM),  # forked by the main thread, which lives on
    )
    assert process.stdout is not None
    last_json: dict[str, Any] | None = None
    for line in process.stdout:
        sys.stderr.write(line)
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                last_json = json.loads(line)
    code = process.wait()
    elapsed = time.monotonic() - started
    if last_json is None:
        raise RuntimeError(f"{name}: no JSON result (exit code {code})")
    if code != 0:
        print(f"== {name}: exit code {code} (a goal was missed; figures kept)", file=sys.stderr)
    return last_json, elapsed


def _ratio(value: float, anchor: float | None) -> float | None:
    return value / anchor if anchor else None


def rows_store(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for cell, figures in sorted(r.items()):
        op, _, threads = cell.rpartition("_")
        out.append(
            (
                "store",
                f"{op} ({threads[:-1]} thread{'s' if threads != '1t' else ''}), SQLite/s",
                figures["sqlite_per_s"],
                "Redis/s",
                figures["redis_per_s"],
                figures["ratio"],
            )
        )
    return out


def rows_registry(r: dict[str, Any]) -> list[Row]:
    oci, harbor = r["oci"], r["harbor"]
    out: list[Row] = []
    flat = next(p["per_tag"] for p in oci["curve"] if p["existing"] == 0)
    for point in oci["curve"]:
        n = point["existing"]
        out.append(
            ("registry", f"OCI (token auth): requests per new tag, {n:,} deployed_ tags before",
             point["per_tag"], "create_tag alone", oci["anchor"], _ratio(point["per_tag"], oci["anchor"]))
        )  # fmt: skip
    worst = max(p["per_tag"] for p in oci["curve"])
    out.append(("registry", "OCI: per-tag cost at 1,000 vs 0 earlier tags", worst, "at 0", flat,
                _ratio(worst, flat)))  # fmt: skip
    out.append(("registry", "Harbor (fake): requests per new tag", harbor["new"], "goal", 1.0,
                _ratio(harbor["new"], 1.0)))  # fmt: skip
    out.append(("registry", "Harbor (fake): requests when the tag exists", harbor["existing"], "goal", 2.0,
                _ratio(harbor["existing"], 2.0)))  # fmt: skip
    return out


def rows_webhook(r: dict[str, Any]) -> list[Row]:
    w, a = r["webhook-max"], r["anchor-max"]
    wp, ap = r["webhook-paced"], r["anchor-paced"]
    d = r["discard-max"]  # the webhook's app with the store write left out (bench/discard_app.py)
    return [
        ("webhook", "/validate req/s (max)", w["rps"], "constant app req/s", a["rps"],
         _ratio(w["rps"], a["rps"])),
        ("webhook", "/validate p50 ms (paced)", wp["p50_ms"], "constant app p50 ms", ap["p50_ms"],
         _ratio(wp["p50_ms"], ap["p50_ms"])),
        ("webhook", "/validate p99 ms (paced)", wp["p99_ms"], "constant app p99 ms", ap["p99_ms"],
         _ratio(wp["p99_ms"], ap["p99_ms"])),
        ("webhook", "server CPU µs/req (max)", w["server_cpu_us"], "constant app µs/req",
         a["server_cpu_us"], _ratio(w["server_cpu_us"], a["server_cpu_us"])),
        ("webhook", "app, records discarded: req/s (max)", d["rps"], "constant app req/s", a["rps"],
         _ratio(d["rps"], a["rps"])),
    ]  # fmt: skip


def rows_listener(r: dict[str, Any]) -> list[Row]:
    return [
        ("listener", "event path, events/s", r["listener_path_per_s"], "json.loads events/s",
         r["json_loads_per_s"], r["ratio"]),
        ("listener", f"informer RSS MB, {r['events']:,} events", r["rss_big_mb"], "RSS MB, 1,000 events",
         r["rss_small_mb"], _ratio(r["rss_big_mb"], r["rss_small_mb"])),
    ]  # fmt: skip


def rows_rollout(r: dict[str, Any]) -> list[Row]:
    n, i = r["pods"], r["images"]
    return [
        ("rollout", f"{n} pods / {i} images: s to the last tag", r["pulltag_last_tag_s"],
         "s to all running, no pulltag", r["anchor_all_running_s"], r["ratio_last_tag_vs_anchor"]),
        ("rollout", "s to create the pods (admission)", r["pulltag_create_s"], "s, no webhooks",
         r["anchor_create_s"], _ratio(r["pulltag_create_s"], r["anchor_create_s"])),
        ("rollout", f"registry requests for {i} tags", r["registry_requests"], "protocol minimum (3/tag)",
         r["registry_requests_minimum"], r["ratio_registry_requests"]),
        ("rollout", f"webhook peak RSS MB ({r['webhook_processes']} processes)", r["webhook_peak_hwm_mb"],
         "MB at start", r["webhook_idle_hwm_mb"], _ratio(r["webhook_peak_hwm_mb"], r["webhook_idle_hwm_mb"])),
        ("rollout", "listener peak RSS MB", r["listener_peak_hwm_mb"], "MB at start",
         r["listener_idle_hwm_mb"], _ratio(r["listener_peak_hwm_mb"], r["listener_idle_hwm_mb"])),
    ]  # fmt: skip


def rows_inventory(r: dict[str, Any]) -> list[Row]:
    return [
        ("inventory", f"pass peak RSS MB, {r['pods']:,} running pods", r["peak_big_mb"],
         f"MB, {r['small']:,} pods", r["peak_small_mb"], _ratio(r["peak_big_mb"], r["peak_small_mb"])),
        ("inventory", f"pass s, {r['pods']:,} pods", r["pass_s"], "bare paginated LIST s", r["bare_list_s"],
         r["ratio_pass_vs_list"]),
    ]  # fmt: skip


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "store": rows_store,
    "registry": rows_registry,
    "webhook": rows_webhook,
    "listener": rows_listener,
    "rollout": rows_rollout,
    "inventory": rows_inventory,
}


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def table(rows: list[Row]) -> str:
    header = ("benchmark", "figure", "value", "anchor", "anchor value", "ratio")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bench, figure, value, anchor, anchor_value, ratio in rows:
        cells = (bench, figure, _num(value), anchor, _num(anchor_value), _num(ratio))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--hog", action="store_true", help="the rollout beside one busy process")
    args = parser.parse_args(argv)
    wanted = {n for n in args.only.split(",") if n} or {name for name, _, _ in BENCHMARKS}
    started = time.monotonic()
    machine = speed()
    print(describe(machine), file=sys.stderr, flush=True)
    rows: list[Row] = []
    durations: dict[str, float] = {}
    for name, full, quick in BENCHMARKS:
        if name not in wanted:
            continue
        extra = ["--hog"] if args.hog and name == "rollout" else []
        result, elapsed = run(name, (quick if args.quick else full) + extra)
        durations[name] = elapsed
        rows += ROWS[name](result)
    total = time.monotonic() - started
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"pulltag benchmarks, {when}; {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{describe(machine)} (at start); again at the end: {describe(speed())[len('machine speed: ') :]}")
    print(f"command: {' '.join(['.venv/bin/python', 'bench/report.py', *(argv or sys.argv[1:])])}")
    print("ratio = value / anchor value (anchors measured in the same run)")
    print()
    print(table(rows))
    print()
    print(
        "run time: "
        + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in durations.items())
        + f"; total {total:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
