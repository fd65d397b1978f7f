"""The listener's Prometheus metrics, on a registry of its own (no global state shared between tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ListenerMetrics"]

# The ledger's tagging and release outcomes (pulltag.store.OUTCOMES), as the per-registry counters use them.
TAG_OUTCOMES = ("created", "exists", "skipped", "failed", "dry-run")
RELEASED_OUTCOMES = ("released", "unsupported", "moved", "immutable")
INVENTORY_OUTCOMES = ("complete", "list_error", "store_error", "stopped")
PULL_OUTCOMES = ("confirmed", "unadmitted", "mismatch", "no_digest", "invalid", "filtered", "not_kubelet")
# The informer's restart causes (listener/informer.py), present from the start like the pull outcomes.
WATCH_RESTART_CAUSES = (
    "closed", "gone", "stalled", "connection", "unreachable", "throttled", "http_error", "decode", "error",
)  # fmt: skip


class ListenerMetrics:
    def __init__(self) -> None:
        """Every metric of the listener, declared in one place (long on purpose: one declaration per
        metric, each with its help text, reads best as one list)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "pulltag_events", "Events received from the API server, by Event reason", ["reason"], registry=r
        )
        self.pulls = Counter(
            "pulltag_pulls", "Pulled events by confirmation outcome", ["outcome"], registry=r
        )
        self.tags = Counter(
            "pulltag_tags", "Tagging outcomes by registry", ["registry", "outcome"], registry=r
        )
        self.registry_seconds = Histogram(
            "pulltag_registry_request_duration_seconds",
            "Duration of registry operations",
            ["registry", "operation"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.watch_restarts = Counter(
            "pulltag_watch_restarts", "Watch streams restarted, by cause", ["cause"], registry=r
        )
        self.queue_depth = Gauge(
            "pulltag_queue_depth", "Work items waiting (events, confirmations, tags)", registry=r
        )
        self.tags_released = Counter(
            "pulltag_tags_released",
            "Release attempts of pulltag's own tags, by registry and ledger outcome",
            ["registry", "outcome"],
            registry=r,
        )
        self.retention_passes = Counter(
            "pulltag_retention_passes",
            "Release passes by outcome (ran, disabled, no_inventory, stale_inventory, store_error, ...)",
            ["outcome"],
            registry=r,
        )
        self.inventory_digests = Gauge(
            "pulltag_inventory_digests", "Digests running at the last complete inventory pass", registry=r
        )
        self.inventory_age_seconds = Gauge(
            "pulltag_inventory_age_seconds",
            "Seconds since the last complete inventory pass (+Inf: none yet; NaN: not leading)",
            registry=r,
        )
        self.inventory_passes = Counter(
            "pulltag_inventory_passes", "Inventory passes by outcome", ["outcome"], registry=r
        )
        self.inventory_refreshes_dropped = Counter(
            "pulltag_inventory_refreshes_dropped",
            "Pulled-event refreshes of the inventory dropped (too many waiting to be written)",
            registry=r,
        )
        for outcome in INVENTORY_OUTCOMES:
            self.inventory_passes.labels(outcome)
        self.leader = Gauge(
            "pulltag_leader", "1 while this replica holds the Lease and runs the pipeline, else 0", registry=r
        )
        self.store_up = Gauge(
            "pulltag_store_up", "1 when the store answered a ping during this scrape, else 0", registry=r
        )
        self.watch_last_activity = Gauge(
            "pulltag_watch_last_activity_timestamp_seconds",
            "When the watch last listed, opened a stream or received an event or bookmark (Unix time)",
            registry=r,
        )
        for outcome in PULL_OUTCOMES:
            self.pulls.labels(outcome)  # present from the start, so rate() works from the first scrape
        for cause in WATCH_RESTART_CAUSES:
            self.watch_restarts.labels(cause)

    def start_registries(self, hosts: Iterable[str]) -> None:
        """Per-registry series present from the start (0), so rate() and the dashboard see them before the
        first tag or release of a registry."""
        for host in hosts:
            for outcome in TAG_OUTCOMES:
                self.tags.labels(host, outcome)
            for outcome in RELEASED_OUTCOMES:
                self.tags_released.labels(host, outcome)

    def track_watch(self, last_activity: Callable[[], float]) -> None:
        """Show `last_activity()` (a time.monotonic() reading) as wall-clock time, read at each scrape, so
        the watch thread pays nothing per event."""
        self.watch_last_activity.set_function(lambda: time.time() - (time.monotonic() - last_activity()))

    def track_store(self, ping: Callable[[], object], timeout: float = 5.0) -> None:
        """Ping the store at each scrape: `pulltag_store_up` is 0 when it raises or takes over `timeout`.

        The pings run on one thread of their own: the health server answers each request on a new thread,
        and the SQLite store opens a connection per thread that lives as long as the store.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-ping")

        def up() -> float:
            try:
                executor.submit(ping).result(timeout)
            except Exception:  # any failure to answer is "down"; a scrape must never fail on it
                return 0.0
            return 1.0

        self.store_up.set_function(up)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value (0 when absent); for tests and the bench."""
        got = self.registry.get_sample_value(name, labels or {})
        return float(got) if got is not None else 0.0
