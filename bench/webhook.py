"""Benchmark: `pulltag webhook` /validate against a constant endpoint served the same way, same run.

Three servers run under gunicorn with the same TLS and worker settings (`webhook.serve.serve`):
  - the webhook (`pulltag webhook`), writing every admission record to an SQLite file (or --store-url);
  - the constant app (`bench/constant_app.py`): the anchor, gunicorn + TLS and nothing else;
  - the webhook's app with its records discarded (`bench/discard_app.py`): everything but the store write,
    so the server CPU per request breaks down into serving (anchor), the app, and the store write.
Clients are processes, each with a few threads holding keep-alive HTTPS connections (http.client, to keep
client overhead low and equal).

Two phases per server:
  1. throughput: `--requests` validating reviews (default 20,000) as fast as the clients go;
  2. paced: both servers at one third of the anchor's maximum measured in phase 1 of this run (a fair
     load on any machine: a fixed rate would be a different share of capacity on a slower day), for
     `--paced-requests` (default 5,000); `--rate` sets a fixed rate instead.
Each phase is split into `--rounds` runs per server (default 2), interleaved and alternating the order
of the servers, so that other work on a shared machine slows both alike; the figures pool the rounds,
and each round's ratio is printed too, to show how far the machine moved.
Prints requests/s, p50 and p99 for each, the webhook/anchor ratios and the goals: /validate throughput
at least 0.6x the constant app's, and p99 at the paced load at most 2x the constant app's; then the server
CPU per request broken down.

    .venv/bin/python bench/webhook.py [--requests 20000] [--rounds 2] [--clients 4] [--threads 2] [--rate 0]
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import multiprocessing
import os
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.procs import ManagedProcess, free_port  # noqa: E402
from tests.harness.webhook import WebhookServer, client_context, make_certs, pod_review  # noqa: E402

CONFIG = {"registries": [{"host": "harbor.example.com"}]}
PACE_SHARE = 1 / 3  # of the anchor's measured maximum
GOAL_RPS_RATIO = 0.6
GOAL_P99_RATIO = 2.0
SERVERS = ("anchor", "discard", "webhook")  # in the order of the CPU breakdown


def _bodies(prefix: str, count: int) -> list[bytes]:
    containers = {"app": "harbor.example.com/shop/web:2.1", "proxy": "harbor.example.com/infra/envoy:1.30"}
    return [
        json.dumps(pod_review(uid=f"{prefix}-{i}", pod_uid=f"{prefix}-{i}", containers=containers)).encode()
        for i in range(count)
    ]


def _client(args: tuple[int, str, int, int, int, float, str]) -> list[float]:
    """One client process: `threads` connections sending `count` requests in total, paced if rate > 0."""
    port, path, count, threads, index, rate, ca_file = args
    context = client_context(Path(ca_file))
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = count // threads
    interval = threads / rate if rate > 0 else 0.0

    def run(t: int) -> None:
        bodies = _bodies(f"{path.strip('/')}-{os.getpid()}-{index}-{t}-{time.time_ns()}", per_thread)
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)
        headers = {"Content-Type": "application/json"}
        mine: list[float] = []
        next_at = time.perf_counter()
        for body in bodies:
            if interval:
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not synchronisation
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            mine.append(time.perf_counter() - started)
            if resp.status != 200 or b'"allowed":true' not in data:
                raise RuntimeError(f"unexpected answer {resp.status}: {data[:200]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in the process group (gunicorn master + workers)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    port: int, path: str, total: int, clients: int, threads: int, rate: float, ca: Path, pgid: int = 0
) -> dict[str, Any]:
    """One run: its latencies (seconds), wall time and, with `pgid`, the server's CPU seconds."""
    cpu_before = group_cpu_seconds(pgid) if pgid else 0.0
    per_client = total // clients
    per_rate = rate / clients if rate else 0.0
    jobs = [(port, path, per_client, threads, i, per_rate, str(ca)) for i in range(clients)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_client, jobs)
    elapsed = time.perf_counter() - started
    cpu = group_cpu_seconds(pgid) - cpu_before if pgid else None
    return {"latencies": [x for r in results for x in r], "elapsed": elapsed, "cpu": cpu}


def _measure_server(
    servers: dict[str, tuple[int, str, int]],
    clients: int,
    threads: int,
    rate: float,
    ca: Path,
    name: str,
    count: int,
) -> dict[str, Any]:
    port, path, pgid = servers[name]
    return measure(port, path, count, clients, threads, rate, ca, pgid)


def figures(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Requests/s, p50 and p99 over several runs pooled, and server CPU per request (µs)."""
    latencies = sorted(x for r in runs for x in r["latencies"])
    out = {
        "requests": len(latencies),
        "rps": len(latencies) / sum(r["elapsed"] for r in runs),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }
    if all(r["cpu"] is not None for r in runs):  # what the code costs, whatever the clients cost
        out["server_cpu_us"] = sum(r["cpu"] for r in runs) / len(latencies) * 1e6
    return out


def interleaved(
    servers: dict[str, tuple[int, str, int]], phase: str, total: int, rounds: int, measure_one: Any
) -> tuple[dict[str, dict[str, float]], list[float]]:
    """`rounds` runs of each server, alternating which goes first, so that a machine shared with other
    work slows both alike; the pooled figures per server and each round's webhook/anchor ratio
    (req/s for the max phase, p99 for the paced one)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    ratios: list[float] = []
    for r in range(rounds):
        names = list(servers)
        order = names[r % len(names) :] + names[: r % len(names)]  # each round starts with the next
        order = order if r % 2 == 0 else list(reversed(order))
        this: dict[str, dict[str, float]] = {}
        for name in order:
            run = measure_one(name, total // rounds)
            runs[name].append(run)
            this[name] = figures([run])
        if phase == "max":
            ratios.append(this["webhook"]["rps"] / this["anchor"]["rps"])
        else:
            ratios.append(this["webhook"]["p99_ms"] / this["anchor"]["p99_ms"])
    return {f"{name}-{phase}": figures(rs) for name, rs in runs.items()}, ratios


def _line(name: str, r: dict[str, float]) -> str:
    cpu = f"  server CPU {r['server_cpu_us']:5.0f} µs/req" if "server_cpu_us" in r else ""
    return (
        f"  {name:<22} {r['requests']:>6.0f} req  {r['rps']:>8.0f} req/s"
        f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms{cpu}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--paced-requests", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=0.0, help="fixed paced rate (0: a third of max)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs per server and phase, interleaved (figures pooled)"
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--threads", type=int, default=2, help="connections per client process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=4)
    parser.add_argument("--store-url", default=None, help="default: an SQLite file in a temporary folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pulltag-bench-") as tmp:
        work = Path(tmp)
        certs = make_certs(work / "certs")
        store_url = args.store_url or f"sqlite:///{work}/bench.db"
        webhook = WebhookServer(
            work / "webhook",
            store_url,
            workers=args.workers,
            threads=args.server_threads,
            config=CONFIG,
            certs=certs,
        )
        discard_port = free_port()
        discard = ManagedProcess(
            "discard",
            [
                sys.executable, "-P", str(ROOT / "bench" / "discard_app.py"),
                "--bind", f"127.0.0.1:{discard_port}", "--db", str(work / "discard.db"),
                "--certfile", str(certs / "tls.crt"), "--keyfile", str(certs / "tls.key"),
                "--workers", str(args.workers), "--threads", str(args.server_threads),
            ],
            work / "discard",
            env={"TMPDIR": str(work)},
        )  # fmt: skip
        anchor_port = free_port()
        anchor = ManagedProcess(
            "anchor",
            [
                # -P: bench/ must not shadow the `webhook` package with this file
                sys.executable, "-P", str(ROOT / "bench" / "constant_app.py"),
                "--bind", f"127.0.0.1:{anchor_port}",
                "--certfile", str(certs / "tls.crt"), "--keyfile", str(certs / "tls.key"),
                "--workers", str(args.workers), "--threads", str(args.server_threads),
            ],
            work / "anchor",
        )  # fmt: skip
        try:
            webhook.start()
            anchor.start()
            discard.start()
            anchor.wait_ready(lambda: _answers(anchor_port, certs / "ca.crt"))
            discard.wait_ready(lambda: _answers(discard_port, certs / "ca.crt", "GET", "/healthz"))
            print(
                f"pulltag webhook benchmark: {os.cpu_count()} CPUs, gunicorn gthread workers={args.workers} "
                f"threads={args.server_threads}, TLS, {args.clients}x{args.threads} keep-alive clients, "
                f"store {store_url.split(':')[0]}"
            )
            ca = certs / "ca.crt"
            # warm up both (imports, first handshakes, SQLite schema)
            measure(webhook.port, "/validate", 400, args.clients, args.threads, 0, ca)
            measure(anchor_port, "/anchor", 400, args.clients, args.threads, 0, ca)
            measure(discard_port, "/validate", 400, args.clients, args.threads, 0, ca)
            assert webhook.process is not None and webhook.process.proc is not None
            assert anchor.proc is not None and discard.proc is not None
            servers = {
                "webhook": (webhook.port, "/validate", webhook.process.proc.pid),
                "anchor": (anchor_port, "/anchor", anchor.proc.pid),
                "discard": (discard_port, "/validate", discard.proc.pid),
            }
            results: dict[str, dict[str, float]] = {}
            round_ratios: dict[str, list[float]] = {}
            rate = 0.0
            for phase, total in (("max", args.requests), ("paced", args.paced_requests)):
                one = functools.partial(_measure_server, servers, args.clients, args.threads, rate, ca)
                found, round_ratios[phase] = interleaved(servers, phase, total, args.rounds, one)
                results.update(found)
                rate = args.rate or results["anchor-max"]["rps"] * PACE_SHARE
        finally:
            webhook.stop()
            anchor.stop()
            discard.stop()
    return 0 if _report(results, rate, round_ratios) else 1


def cpu_breakdown(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Server CPU per request of the max phase, split by what each server adds to the one before."""
    try:
        anchor, discard, webhook = (results[f"{n}-max"]["server_cpu_us"] for n in SERVERS)
    except KeyError:
        return {}
    return {
        "gunicorn + TLS + HTTP (constant app)": anchor,
        "the app: decode, decide, recorder, metrics": discard - anchor,
        "the store write (SQLite commit or Redis)": webhook - discard,
        "webhook in all": webhook,
    }


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _answers(port: int, ca: Path, method: str = "POST", path: str = "/") -> bool:
    """The server answers 200: the constant app to a POST of `{}` on any path; the webhook's app (whose
    `/validate` answers such a body 400) to `GET /healthz`."""
    conn = http.client.HTTPSConnection("localhost", port, context=client_context(ca), timeout=2)
    try:
        body = b"{}" if method == "POST" else None
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        return conn.getresponse().status == 200
    except (OSError, ssl.SSLError):
        return False
    finally:
        conn.close()


def _report(results: dict[str, dict[str, float]], rate: float, rounds: dict[str, list[float]]) -> bool:
    """Print the figures, the goals and the JSON line; True when both goals are met."""
    ratio_rps = results["webhook-max"]["rps"] / results["anchor-max"]["rps"]
    ratio_p99 = results["webhook-paced"]["p99_ms"] / results["anchor-paced"]["p99_ms"]
    print("throughput (as fast as the clients go):")
    print(_line("webhook /validate", results["webhook-max"]))
    print(_line("app, records discarded", results["discard-max"]))
    print(_line("anchor (constant)", results["anchor-max"]))
    print(f"  ratio webhook/anchor req/s: {ratio_rps:.2f} (per round: {_list(rounds['max'])})")
    print(f"paced at {rate:.0f} req/s (a third of the anchor's maximum unless --rate):")
    print(_line("webhook /validate", results["webhook-paced"]))
    print(_line("app, records discarded", results["discard-paced"]))
    print(_line("anchor (constant)", results["anchor-paced"]))
    print(f"  ratio webhook/anchor p99: {ratio_p99:.2f} (per round: {_list(rounds['paced'])})")
    met_rps, met_p99 = ratio_rps >= GOAL_RPS_RATIO, ratio_p99 <= GOAL_P99_RATIO
    print(f"  goal req/s >= {GOAL_RPS_RATIO}x anchor: {'met' if met_rps else 'NOT met'} ({ratio_rps:.2f})")
    print(
        f"  goal paced p99 <= {GOAL_P99_RATIO:g}x anchor: {'met' if met_p99 else 'NOT met'} ({ratio_p99:.2f})"
    )
    breakdown = cpu_breakdown(results)
    if breakdown:
        print("server CPU per request (max phase), by part:")
        for part, value in breakdown.items():
            print(f"  {part:<40} {value:6.0f} µs")
    report: dict[str, Any] = {k: {m: round(v, 3) for m, v in r.items()} for k, r in results.items()}
    report.update(cpu_breakdown_us={k: round(v, 1) for k, v in breakdown.items()})
    report.update(ratio_rps=round(ratio_rps, 3), ratio_p99=round(ratio_p99, 3), paced_rate=round(rate, 1))
    report.update(round_ratios_rps=[round(x, 3) for x in rounds["max"]])
    report.update(round_ratios_p99=[round(x, 3) for x in rounds["paced"]])
    print(json.dumps(report, sort_keys=True))
    return met_rps and met_p99


if __name__ == "__main__":
    raise SystemExit(main())
