"""Requests per new tag: OCI (token auth, real docker-registry) and Harbor (fake), and the OCI curve
against the repository's history.

Run: `.venv/bin/python -m bench.registry [--tags N] [--history 0,100,1000]`.

- anchor: the protocol minimum of `create_tag` alone with a cached token, measured in the same run:
  HEAD tag + GET manifest by digest + PUT = 3;
- per new tag, the listener's way: `tags_on` (is a `deployed_` tag already on the new digest?) then
  `create_tag`, one new digest each time, with a warm token, in a repository whose older digest already
  carries 0, 100, 1,000 `deployed_` tags. Goal: at most 4 requests, and the curve flat (each history within
  10 % of the empty one). The first sight of each repository (its token, and one HEAD per prefixed tag it
  holds) is reported apart;
- Harbor: 1 request per new tag, 2 when the tag already exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from listener.registry import RegistryClient, RetryPolicy, registry_client
from tests.harness.harbor import FakeHarbor
from tests.harness.registry import RegistryServer

PREFIX = "deployed_"
PROTOCOL_MINIMUM = 3  # HEAD + GET + PUT
OCI_GOAL = 4  # the tag listing on top
FLATNESS = 1.10
HARBOR_GOAL, HARBOR_EXISTING_GOAL = 1, 2
RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def protocol_minimum(registry: RegistryServer, tags: int) -> float:
    """create_tag alone, warm token, one digest: the anchor."""
    repo = registry.new_repository()
    digest = registry.push_image(repo, "v1").digest
    with registry_client(registry.settings("admin"), retry=RETRY) as client:
        client.create_tag(repo, digest, "bench-warmup")
        before = client.requests_sent
        for n in range(tags):
            client.create_tag(repo, digest, f"bench_{n}")
        return (client.requests_sent - before) / tags


def with_history(registry: RegistryServer, existing: int) -> str:
    repo = registry.new_repository()
    old = registry.push_image(repo, "v0")
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: registry.push_manifest(repo, f"{PREFIX}old_{n}", old.manifest, old.media_type),
                range(existing),
            )
        )
    return repo


def tag_new_digest(registry: RegistryServer, client: RegistryClient, repo: str, name: str) -> int:
    digest = registry.push_image(repo).digest  # the harness's own push: not counted
    before = client.requests_sent
    if not client.tags_on(repo, digest, PREFIX):
        client.create_tag(repo, digest, name)
    return client.requests_sent - before


def curve_point(registry: RegistryServer, existing: int, tags: int) -> dict[str, float]:
    repo = with_history(registry, existing)
    with registry_client(registry.settings("admin"), retry=RETRY) as client:
        client.check()  # the registry's first contact (its 401 challenge): not the repository's
        first = tag_new_digest(registry, client, repo, f"{PREFIX}first")
        started = time.perf_counter()
        sent = sum(tag_new_digest(registry, client, repo, f"{PREFIX}new_{n}") for n in range(tags))
        elapsed = time.perf_counter() - started  # includes the harness's pushes
    return {"existing": existing, "first_sight": first, "per_tag": sent / tags, "seconds": elapsed}


def harbor_costs(harbor: FakeHarbor, tags: int) -> tuple[float, float]:
    repo = harbor.new_repository()
    digest = harbor.add_artifact(repo, ["v1"])
    with registry_client(harbor.settings(), retry=RETRY) as client:
        before = client.requests_sent
        for n in range(tags):
            client.create_tag(repo, digest, f"bench_{n}")
        new = (client.requests_sent - before) / tags
        before = client.requests_sent
        for n in range(tags):
            client.create_tag(repo, digest, f"bench_{n}")
        existing = (client.requests_sent - before) / tags
    return new, existing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=20, help="new tags measured per point")
    parser.add_argument("--history", default="0,100,1000", help="existing prefixed tags, comma-separated")
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args(argv)
    history = [int(n) for n in args.history.split(",")]
    report: dict[str, Any] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="pulltag-bench-") as tmp:
        registry = RegistryServer(Path(tmp) / "registry", "token").start()
        harbor = FakeHarbor(Path(tmp) / "harbor").start()
        try:
            anchor = protocol_minimum(registry, args.tags)
            print(f"oci (token, docker-registry): create_tag alone {anchor:.2f} requests/tag (the anchor)")
            points = [curve_point(registry, existing, args.tags) for existing in history]
            base = points[0]["per_tag"]
            print(f"oci, per new tag (tags_on + create_tag, warm token), goal <= {OCI_GOAL}, flat to 10%:")
            for p in points:
                flat = p["per_tag"] / base
                print(
                    f"  {int(p['existing']):>5} existing {PREFIX} tags: {p['per_tag']:.2f} requests/tag, "
                    f"ratio to the anchor {p['per_tag'] / anchor:.2f}, to {history[0]} existing {flat:.2f}; "
                    f"first sight of the repository {int(p['first_sight'])} requests"
                )
                failed |= p["per_tag"] > OCI_GOAL or flat > FLATNESS
            report["oci"] = {"anchor": anchor, "curve": points, "goal": OCI_GOAL}

            new, existing = harbor_costs(harbor, args.tags)
            print(
                f"harbor (fake): {new:.2f} requests/new tag (goal {HARBOR_GOAL}), "
                f"{existing:.2f} when the tag exists (goal {HARBOR_EXISTING_GOAL})"
            )
            failed |= new > HARBOR_GOAL or existing > HARBOR_EXISTING_GOAL
            report["harbor"] = {"new": new, "existing": existing}
        finally:
            harbor.stop()
            registry.stop()
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
