"""Requests per new tag, OCI (token auth, real docker-registry) and Harbor (fake).

Run: `.venv/bin/python -m bench.registry [--tags N]`. The anchor is the protocol minimum:
OCI with a cached token needs HEAD tag + GET manifest by digest + PUT = 3; Harbor needs 1 POST
(budget 2). Prints requests per tag, the ratio to the anchor, and the time per tag.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from listener.registry import RegistryClient, RetryPolicy, registry_client
from tests.harness.harbor import FakeHarbor
from tests.harness.registry import RegistryServer

OCI_BUDGET = 3
HARBOR_BUDGET = 2


def measure(client: RegistryClient, repository: str, digest: str, tags: int) -> tuple[float, float, int]:
    client.create_tag(repository, digest, "bench-warmup")  # authenticate, cache the token
    before = client.requests_sent
    started = time.perf_counter()
    for n in range(tags):
        client.create_tag(repository, digest, f"bench_{n}")
    elapsed = time.perf_counter() - started
    sent = client.requests_sent - before
    return sent / tags, elapsed / tags, sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args(argv)
    report: dict[str, dict[str, float]] = {}
    retry = RetryPolicy(attempts=2, base_delay=0.01)
    failed = False
    with tempfile.TemporaryDirectory(prefix="pulltag-bench-") as tmp:
        registry = RegistryServer(Path(tmp) / "registry", "token").start()
        harbor = FakeHarbor(Path(tmp) / "harbor").start()
        try:
            repo = registry.new_repository()
            digest = registry.push_image(repo, "v1").digest
            with registry_client(registry.settings("admin"), retry=retry) as client:
                per_tag, seconds, sent = measure(client, repo, digest, args.tags)
            print(
                f"oci (token, docker-registry): {per_tag:.2f} requests/tag ({sent} for {args.tags} tags), "
                f"anchor {OCI_BUDGET}, ratio {per_tag / OCI_BUDGET:.2f}, {seconds * 1000:.1f} ms/tag"
            )
            failed |= per_tag > OCI_BUDGET
            report["oci"] = {"requests_per_tag": per_tag, "anchor": OCI_BUDGET, "ms_per_tag": seconds * 1000}

            hrepo = harbor.new_repository()
            hdigest = harbor.add_artifact(hrepo, ["v1"])
            with registry_client(harbor.settings(), retry=retry) as client:
                per_tag, seconds, sent = measure(client, hrepo, hdigest, args.tags)
            print(
                f"harbor (fake): {per_tag:.2f} requests/tag ({sent} for {args.tags} tags), "
                f"anchor {HARBOR_BUDGET}, ratio {per_tag / HARBOR_BUDGET:.2f}, {seconds * 1000:.1f} ms/tag"
            )
            failed |= per_tag > HARBOR_BUDGET
            report["harbor"] = {
                "requests_per_tag": per_tag,
                "anchor": HARBOR_BUDGET,
                "ms_per_tag": seconds * 1000,
            }
        finally:
            harbor.stop()
            registry.stop()
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
