"""`pulltag retention plan` and `pulltag retention apply` (dispatched lazily by pulltag.cli)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict

from listener.metrics import ListenerMetrics
from listener.releaser import Releaser, read_plan
from listener.retention import TagDecision
from pulltag.config import Settings
from pulltag.store import open_store

EXIT_CONFIG = 2


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row(d: TagDecision) -> list[str]:
    return [_when(d.created_at), d.action, d.reason, d.namespace, d.image, d.tag, d.detail]


def _print_table(decisions: list[TagDecision]) -> None:
    header = ["CREATED (UTC)", "ACTION", "REASON", "NAMESPACE", "IMAGE", "TAG", "DETAIL"]
    rows = [header, *(_row(d) for d in decisions)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def run_plan(args: argparse.Namespace, settings: Settings) -> int:
    """Every tag pulltag created: keep, release or done, and why. Reads only; works with retention off."""
    store = open_store(settings.store, create=False)
    try:
        decisions, blocker = read_plan(store, settings, time.time())
    finally:
        store.close()
    if args.json:
        print(json.dumps([asdict(d) for d in decisions], indent=1, sort_keys=True))
        return 0
    if not decisions:
        print("no tag created by pulltag in the ledger")
        return 0
    _print_table(decisions)
    releases = sum(1 for d in decisions if d.action == "release")
    print(f"\n{len(decisions)} tags: {releases} to release")
    if blocker is not None:
        print(f"a pass now would release nothing: {blocker} (the listener's inventory must be fresh)")
    if not settings.retention.enabled:
        print("retention.enabled is false: the listener releases nothing")
    return 0


def run_apply(args: argparse.Namespace, settings: Settings) -> int:
    """One release pass now. Exit 2 when retention is off, 1 when the pass released nothing on doubt."""
    if not settings.retention.enabled:
        print(
            "pulltag retention apply: retention.enabled is false in the configuration; nothing released",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    store = open_store(settings.store, create=False)
    try:
        report = Releaser(settings, store, ListenerMetrics()).run_once()
    finally:
        store.close()
    for decision, outcome in report.acted:
        print(f"{outcome}  {decision.image}:{decision.tag}  ({decision.digest})")
    if report.outcome in ("ran", "dry_run"):
        released = sum(1 for _, outcome in report.acted if outcome == "released")
        print(f"release pass {report.outcome}: {released} released, {len(report.acted)} acted on")
        return 0
    print(
        f"pulltag retention apply: released nothing more: {report.outcome}: {report.detail}", file=sys.stderr
    )
    return 1
