"""A simulated year of deploys with retention on (the defaults), against the fake Harbor (which deletes
tags) and the real docker-registry (distribution 2.8, which refuses tag deletion: reported).

Run: `.venv/bin/python -m bench.lifecycle [--days 365] [--json]`.

10 repositories x 3 namespaces; every weekday a new digest per repository and namespace replaces the
last. Each day, driven by one simulated clock: the new digests are pushed (the harness's own requests,
not counted), pulltag tags each one with the registry calls its tagger makes (`tags_on`, then
`create_tag`) and writes the ledger; the inventory records what runs (the store's inventory methods,
as the listener's pass does, old entries pruned after 90 days); then one release pass
(`listener.releaser.Releaser`, the listener's own) runs. Release passes at `retention.interval_seconds`
(1 h) between two deploys find nothing new to release (grace and age move in whole days here), so one
pass per simulated day stands for them; idle passes make no registry request.

Reports: prefixed tags per repository at the end (goal <= keep_last x namespaces + running), pulltag's
registry requests per weekday in the week of day 30 (the anchor) vs the week of the last day (goal:
within 10 %), the store's size and ledger length at the end, and the wall time (goal < 3 min).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from listener.metrics import ListenerMetrics
from listener.plan import render_tag
from listener.registry import RegistryClient, RetryPolicy, registry_client
from listener.releaser import Releaser
from pulltag.config import RegistrySettings, RetentionSettings, Settings, StoreSettings
from pulltag.store import InventoryPass, LedgerEntry, Sighting, Store, open_store
from pulltag.store.base import ledger_image
from tests.harness.harbor import FakeHarbor
from tests.harness.registry import OCI_MANIFEST, RegistryServer

DAY = 86400.0
REPOSITORIES = 10
NAMESPACES = ("prod", "staging", "batch")
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
PRUNE_AFTER = 90 * DAY
WALL_GOAL_SECONDS = 180.0
FLATNESS_GOAL = 0.10


class DigestSource:
    """New digests in a repository: Harbor adds artifacts; the docker-registry gets one manifest per
    digest over one pushed config and layer (annotations differ), so a push is one request."""

    def __init__(self, backend: FakeHarbor | RegistryServer) -> None:
        self.backend = backend
        self.base: dict[str, dict[str, Any]] = {}
        self.count = 0

    def new(self, repository: str) -> str:
        self.count += 1
        if isinstance(self.backend, FakeHarbor):
            return self.backend.seed_image(repository)
        base = self.base.get(repository)
        if base is None:
            base = self.base[repository] = json.loads(self.backend.push_image(repository, "base").manifest)
        manifest = dict(base, annotations={"bench.pulltag/n": str(self.count)})
        return self.backend.push_manifest(repository, None, json.dumps(manifest).encode(), OCI_MANIFEST)


@dataclass
class Year:
    name: str
    backend: FakeHarbor | RegistryServer
    registry: RegistrySettings
    store_path: Path
    days: int
    requests_by_day: list[int] = field(default_factory=list)
    released: int = 0
    unsupported: int = 0

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        settings = Settings(
            store=StoreSettings(url=f"sqlite:///{self.store_path}"),
            registries=(self.registry,),
            retention=RetentionSettings(enabled=True),
        )
        store = open_store(settings.store)
        now = [START.timestamp()]
        client = registry_client(self.registry, retry=RetryPolicy(attempts=3, base_delay=0.01))
        releaser = Releaser(
            settings, store, ListenerMetrics(), deleter_factory=lambda _: client, clock=lambda: now[0]
        )
        source = DigestSource(self.backend)
        repositories = [self.backend.new_repository(f"year/app{i}") for i in range(REPOSITORIES)]
        running: dict[tuple[str, str], str] = {}
        try:
            for day in range(self.days):
                now[0] = START.timestamp() + day * DAY
                before = client.requests_sent
                if datetime.fromtimestamp(now[0], UTC).weekday() < 5:
                    self._deploy(settings, store, client, source, repositories, running, now[0])
                self._inventory(store, running, now[0] + 60)
                now[0] += 120
                report = releaser.run_once()
                self.released += sum(1 for _, o in report.acted if o == "released")
                self.unsupported += sum(1 for _, o in report.acted if o == "unsupported")
                self.requests_by_day.append(client.requests_sent - before)
            ledger = len(store.query_ledger(limit=settings.store.ledger_max_entries))
            inventory = len(store.inventory())
        finally:
            client.close()
            store.close()
        wall = time.perf_counter() - started
        return self._report(repositories, running, ledger, inventory, wall)

    def _deploy(
        self,
        settings: Settings,
        store: Store,
        client: RegistryClient,
        source: DigestSource,
        repositories: list[str],
        running: dict[tuple[str, str], str],
        now: float,
    ) -> None:
        when = datetime.fromtimestamp(now, UTC)
        for repository in repositories:
            image = ledger_image(f"{self.registry.host}/{repository}")
            for namespace in NAMESPACES:
                digest = source.new(repository)
                tag = render_tag(
                    settings.tagging, namespace=namespace, pod="web", container="app", node="n", when=when
                )
                # What the tagger asks for a digest the ledger does not know yet (scope image).
                if not client.tags_on(repository, digest, f"{settings.tagging.prefix}_"):
                    client.create_tag(repository, digest, tag)
                store.append_ledger(
                    LedgerEntry(image, digest, tag, namespace, "web", "n", now, now, "created")
                )
                running[(repository, namespace)] = digest

    def _inventory(self, store: Store, running: dict[tuple[str, str], str], now: float) -> None:
        image_of = {r: ledger_image(f"{self.registry.host}/{r}") for r, _ in running}
        sightings = [Sighting(image_of[r], d, ns, 2, now) for (r, ns), d in running.items()]
        store.record_sightings(sightings)
        store.complete_inventory_pass(InventoryPass(now, now + 1, len(sightings)))
        store.prune_inventory(now - PRUNE_AFTER)

    def _prefixed_tags(self, repository: str) -> int:
        if isinstance(self.backend, FakeHarbor):
            artifacts = self.backend.repositories.get(repository, {}).values()
            return sum(1 for a in artifacts for t in a.tags if t.startswith("deployed_"))
        return sum(1 for t in self.backend.list_tags(repository) if t.startswith("deployed_"))

    def _report(
        self,
        repositories: list[str],
        running: dict[tuple[str, str], str],
        ledger: int,
        inventory: int,
        wall: float,
    ) -> dict[str, Any]:
        tags = [self._prefixed_tags(r) for r in repositories]
        keep = RetentionSettings().keep_last
        goal_tags = keep * len(NAMESPACES) + len(NAMESPACES)
        early = _weekday_mean(self.requests_by_day, min(30, self.days - 1))
        late = _weekday_mean(self.requests_by_day, self.days - 1)
        return {
            "registry": self.name,
            "days": self.days,
            "tags_per_repository_max": max(tags),
            "tags_per_repository_mean": sum(tags) / len(tags),
            "tags_goal": goal_tags,
            "released": self.released,
            "unsupported": self.unsupported,
            "requests_per_weekday_day30": early,
            "requests_per_weekday_last": late,
            "requests_ratio": late / early if early else None,
            "store_bytes": self.store_path.stat().st_size,
            "ledger_entries": ledger,
            "inventory_entries": inventory,
            "wall_seconds": wall,
        }


def _weekday_mean(per_day: list[int], last: int) -> float:
    """Mean requests over the weekdays of the 7 days ending at day `last` (weekends deploy nothing)."""
    days = [
        per_day[d]
        for d in range(max(0, last - 6), last + 1)
        if datetime.fromtimestamp(START.timestamp() + d * DAY, UTC).weekday() < 5
    ]
    return sum(days) / len(days) if days else 0.0


def _print(r: dict[str, Any]) -> None:
    ratio = r["requests_ratio"]
    print(
        f"{r['registry']}: {r['days']} days; prefixed tags per repository at the end: max "
        f"{r['tags_per_repository_max']} (mean {r['tags_per_repository_mean']:.1f}), "
        f"goal <= {r['tags_goal']}; "
        f"released {r['released']}, unsupported {r['unsupported']}"
    )
    print(
        f"  registry requests per weekday: {r['requests_per_weekday_day30']:.1f} in the week of day 30 "
        f"(anchor), "
        f"{r['requests_per_weekday_last']:.1f} in the last week, ratio {ratio:.3f}"
        if ratio is not None
        else "  registry requests: no weekday in range"
    )
    print(
        f"  store at the end: {r['store_bytes'] / 1e6:.2f} MB SQLite, {r['ledger_entries']} ledger entries, "
        f"{r['inventory_entries']} inventory entries; wall {r['wall_seconds']:.1f} s"
    )


def simulate(kind: str, days: int) -> dict[str, Any]:
    """One registry's year in this process, with its own server (run in parallel with the other's)."""
    with tempfile.TemporaryDirectory(prefix=f"pulltag-lifecycle-{kind}-") as tmp:
        root = Path(tmp)
        backend: FakeHarbor | RegistryServer
        if kind == "harbor":
            backend = FakeHarbor(root / "harbor").start()
            name, settings = "harbor (fake, deletes)", backend.settings()
        else:
            backend = RegistryServer(root / "registry", "anonymous").start()
            name, settings = "docker-registry 2.8 (refuses tag deletion)", backend.settings(None)
        try:
            return Year(name, backend, settings, root / "store.db", days).run()
        finally:
            backend.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    # The two years are independent (own server, own store): one process each.
    with ProcessPoolExecutor(max_workers=2) as pool:
        harbor_run = pool.submit(simulate, "harbor", args.days)
        oci_run = pool.submit(simulate, "oci", args.days)
        harbor_result, oci_result = harbor_run.result(), oci_run.result()
    wall = time.perf_counter() - started
    _print(harbor_result)
    _print(oci_result)
    goals = {
        "harbor_tags": harbor_result["tags_per_repository_max"] <= harbor_result["tags_goal"],
        "harbor_flat": harbor_result["requests_ratio"] is not None
        and abs(harbor_result["requests_ratio"] - 1) <= FLATNESS_GOAL,
        "oci_flat": oci_result["requests_ratio"] is not None
        and abs(oci_result["requests_ratio"] - 1) <= FLATNESS_GOAL,
        "wall": wall < WALL_GOAL_SECONDS,
    }
    print(
        f"wall time {wall:.1f} s (goal < {WALL_GOAL_SECONDS:.0f} s); docker-registry refuses tag deletion: "
        f"its pulltag tags accumulate ({oci_result['tags_per_repository_max']} per repository after "
        f"{args.days} days), use the registry's own retention there"
    )
    print("goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items()))
    if args.json:
        print(json.dumps({"harbor": harbor_result, "oci": oci_result, "wall_seconds": wall, "goals": goals}))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
