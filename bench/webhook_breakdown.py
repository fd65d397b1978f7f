"""Where a /validate request's time goes inside the app: the real app (`create_app`: the admission routes in
front of Flask), decision, recorder and SQLite store, called as WSGI in one process without gunicorn or
TLS (those are the anchor's cost too, measured by bench/webhook.py as server CPU per request). Bench-only
timing wrappers, nothing in the product.

Per request, wall time and the CPU time of the thread doing the work (`time.thread_time`):

- `app`: the whole WSGI call (dispatch, JSON decode, decision, record, metrics, JSON encode);
- `put_admission`: the request thread's part of the record (hand to the writer, wait for its answer);
- `writer`: the writer thread's `Store.put_admissions` for that request's batch (the SQLite transaction);
- `direct`: the same requests with the record written by the request thread itself (no writer thread):
  what the hand-off costs is `app` minus `direct`;
- `app (no record)`: the same requests with the record skipped: everything but the record.

`--threads N` calls from N request threads at once (gthread's pool), where hand-offs meet contention.

Then the writers of two processes (gunicorn's two workers) writing one SQLite file at once, one record
per transaction with a request's worth of pause between, without and with the webhook's file lock
(`webhook.recorder.FileWriteLock`): writes per second, mean and p99 µs, and the share over 1 ms.

    .venv/bin/python -P bench/webhook_breakdown.py [--requests 3000] [--threads 1] [--switch-interval S]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pulltag.config import settings_from_dict  # noqa: E402
from pulltag.store import open_store  # noqa: E402
from pulltag.store.base import AdmissionRecord, Store  # noqa: E402
from tests.harness.webhook import pod_review  # noqa: E402
from webhook.app import create_app  # noqa: E402
from webhook.recorder import WriteResult, write_lock_for  # noqa: E402

CONFIG = {"registries": [{"host": "harbor.example.com"}]}
CONTAINERS = {"app": "harbor.example.com/shop/web:2.1", "proxy": "harbor.example.com/infra/envoy:1.30"}

Totals = dict[str, list[float]]  # segment -> [wall seconds, cpu seconds, count]


class Timer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: Totals = {}

    def add(self, name: str, wall: float, cpu: float, count: int = 1) -> None:
        with self.lock:
            t = self.totals.setdefault(name, [0.0, 0.0, 0])
            t[0] += wall
            t[1] += cpu
            t[2] += count

    def wrap(self, name: str, fn: Callable[..., Any], count: Callable[..., int] = lambda *a: 1) -> Any:
        def timed(*args: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args)
            finally:
                self.add(name, time.perf_counter() - wall, time.thread_time() - cpu, count(*args))

        return timed


def environ(body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/validate", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "8443", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }  # fmt: skip


def run(app: Any, bodies: list[bytes], threads: int, timer: Timer, segment: str) -> None:
    def start_response(status: str, _headers: Any) -> None:
        if not status.startswith("200"):
            raise RuntimeError(status)

    def worker(mine: Iterable[bytes]) -> None:
        for body in mine:
            wall, cpu = time.perf_counter(), time.thread_time()
            b"".join(app(environ(body), start_response))
            timer.add(segment, time.perf_counter() - wall, time.thread_time() - cpu)

    pool = [threading.Thread(target=worker, args=(bodies[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def build(store: Store, timer: Timer, variant: str) -> Any:
    app = create_app(settings_from_dict(CONFIG, env={}), store)
    handlers = app.extensions["pulltag"]
    if variant == "no record":  # bench-only: the record is skipped
        handlers.recorder.put_admission = lambda _record: (WriteResult.OK, "")
    elif variant == "direct":  # bench-only: the request thread writes the record itself, no writer thread

        def write_here(record: AdmissionRecord) -> tuple[WriteResult, str]:
            store.put_admissions([record])
            return WriteResult.OK, ""

        handlers.recorder.put_admission = timer.wrap("direct put_admission", write_here)
    else:
        handlers.recorder.put_admission = timer.wrap("put_admission", handlers.recorder.put_admission)
        handlers.recorder._store = _TimedStore(store, timer)
    return app


class _TimedStore:
    def __init__(self, store: Store, timer: Timer) -> None:
        self._store = store
        self.put_admissions = timer.wrap("writer put_admissions", store.put_admissions, lambda r: len(r))


def _contending_writer(url: str, prefix: str, locked: bool, seconds: float, out: Any) -> None:
    store = open_store(url)
    lock = write_lock_for(url) if locked else None
    images = {"containers": CONTAINERS}
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n = len(latencies)
        record = AdmissionRecord(uid=f"{prefix}{n}", namespace="ns", name=f"p{n}", images=images)
        started = time.perf_counter()
        if lock is not None:
            with lock.held():
                store.put_admissions([record])
        else:
            store.put_admissions([record])
        latencies.append(time.perf_counter() - started)
        time.sleep(0.0002)  # the rest of a request
    store.close()
    out.put(latencies)


def contention(tmp: str, seconds: float = 3.0) -> dict[str, dict[str, float]]:
    """Two processes writing one SQLite file, without then with the file lock, twice, interleaved."""
    context = multiprocessing.get_context("fork")
    result: dict[str, dict[str, float]] = {}
    for run, locked in enumerate((False, True, False, True)):
        url = f"sqlite:///{tmp}/contention-{run}.db"
        open_store(url).close()
        out = context.Queue()
        procs = [
            context.Process(target=_contending_writer, args=(url, p, locked, seconds, out)) for p in "ab"
        ]
        for proc in procs:
            proc.start()
        latencies = sorted(out.get(timeout=60) + out.get(timeout=60))
        for proc in procs:
            proc.join(timeout=10)
        n = len(latencies)
        result[f"{'with' if locked else 'without'} lock, run {run // 2 + 1}"] = {
            "writes_per_s": n / seconds,
            "mean_us": sum(latencies) / n * 1e6,
            "p99_us": latencies[int(n * 0.99)] * 1e6,
            "over_1ms_pct": 100 * sum(x > 0.001 for x in latencies) / n,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--switch-interval", type=float, default=0.0, help="sys.setswitchinterval (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    totals: Totals = {}
    with tempfile.TemporaryDirectory(prefix="pulltag-bench-breakdown-") as tmp:
        for stem in ("recorder", "direct", "no record"):
            timer = Timer()
            store = open_store(f"sqlite:///{tmp}/{stem.replace(' ', '-')}.db")
            app = build(store, timer, stem)
            bodies = [
                json.dumps(pod_review(uid=f"r{i}", pod_uid=f"{stem}{i}", containers=CONTAINERS)).encode()
                for i in range(300 + args.requests)
            ]
            run(app, bodies[:300], args.threads, timer, "warm-up")  # imports, schema, page cache
            timer.totals.clear()
            run(app, bodies[300:], args.threads, timer, f"app ({stem})")
            totals.update(timer.totals)
            app.extensions["pulltag"].recorder.close()
            store.close()
    print(f"/validate inside the app, {args.requests} requests from {args.threads} thread(s), SQLite:")
    result: dict[str, dict[str, float]] = {}
    for name, (wall, cpu, count) in totals.items():
        per = args.requests  # per request (the writer's totals cover batches of several records)
        result[name] = {"wall_us": round(wall / per * 1e6, 1), "cpu_us": round(cpu / per * 1e6, 1)}
        print(f"  {name:<24} wall {wall / per * 1e6:7.1f} µs  CPU {cpu / per * 1e6:7.1f} µs  ({count} calls)")
    with tempfile.TemporaryDirectory(prefix="pulltag-bench-contention-") as tmp:
        found = contention(tmp)
    print("two processes writing one SQLite file, one record per transaction:")
    for name, f in found.items():
        print(
            f"  {name:<20} {f['writes_per_s']:7.0f} writes/s  mean {f['mean_us']:6.0f} µs"
            f"  p99 {f['p99_us']:6.0f} µs  over 1 ms {f['over_1ms_pct']:4.1f} %"
        )
    if args.json:
        print(json.dumps({**result, **found}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
