"""Store throughput: claims/s and admission writes/s, SQLite against Redis, measured in the same run.

    python bench/store.py [--seconds 1.0] [--threads 4]

Starts its own redis-server (the test harness's launcher) and uses a temporary SQLite file. Each cell
runs for a fixed time and counts completed calls; every claim takes a fresh key, so each one writes.
The anchor is Redis: the last column is SQLite/Redis. No pass/fail threshold: it reports only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from pulltag.store import AdmissionRecord, Store, open_store
from tests.harness.redis import RedisServer

Op = Callable[[Store, int], object]


def _claim(store: Store, n: int) -> object:
    return store.claim(f"bench-claim-{n}", 600)


def _admission(store: Store, n: int) -> object:
    record = AdmissionRecord(
        uid=f"uid-{n}",
        namespace=f"ns-{n % 10}",
        name=f"pod-{n}",
        images={"containers": {"app": "harbor.example.com/team/app:1.0", "sidecar": "nginx:1.27"}},
        owner="ReplicaSet/app-5d8f",
        node="node-a",
        admitted_at=time.time(),
    )
    store.put_admission(record)
    return None


def rate(store: Store, op: Op, threads: int, seconds: float) -> float:
    """Calls per second of `op` from `threads` threads sharing one store, over about `seconds`."""
    counter = itertools.count()  # next() is atomic under the GIL: a unique n per call
    done = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        start.wait()
        while not stop.is_set():
            op(store, next(counter))
            done[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each cell (default 1.0)")
    parser.add_argument(
        "--threads", type=int, default=4, help="threads of the multi-threaded rows (default 4)"
    )
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pulltag-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            stores = {
                "sqlite": open_store(f"sqlite:///{tmp}/bench.db"),
                "redis": open_store(server.url(0)),
            }
            rows: list[tuple[str, int, float, float]] = []
            for label, op in (("claim", _claim), ("put_admission", _admission)):
                for threads in (1, args.threads):
                    sqlite_rate = rate(stores["sqlite"], op, threads, args.seconds)
                    redis_rate = rate(stores["redis"], op, threads, args.seconds)
                    rows.append((label, threads, sqlite_rate, redis_rate))
            for store in stores.values():
                store.close()
        finally:
            server.stop()

    print(f"{'operation':<15}{'threads':>8}{'sqlite/s':>12}{'redis/s':>12}{'sqlite/redis':>14}")
    for label, threads, sqlite_rate, redis_rate in rows:
        ratio = sqlite_rate / redis_rate
        print(f"{label:<15}{threads:>8}{sqlite_rate:>12,.0f}{redis_rate:>12,.0f}{ratio:>14.2f}")
    if args.json:
        report = {
            f"{label}_{threads}t": {
                "sqlite_per_s": round(sq),
                "redis_per_s": round(rd),
                "ratio": round(sq / rd, 3),
            }
            for label, threads, sq, rd in rows
        }
        print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
