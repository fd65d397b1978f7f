"""The listener's Prometheus metrics, on a registry of its own (no global state shared between tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ListenerMetrics"]

INVENTORY_OUTCOMES = ("complete", "list_error", "store_error", "stopped")
PULL_OUTCOMES = ("confirmed", "unadmitted", "mismatch", "no_digest", "invalid", "filtered", "not_kubelet")


class ListenerMetrics:
    def __init__(self) -> None:
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
        for outcome in PULL_OUTCOMES:
            self.pulls.labels(outcome)  # present from the start, so rate() works from the first scrape

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value (0 when absent); for tests and the bench."""
        got = self.registry.get_sample_value(name, labels or {})
        return float(got) if got is not None else 0.0
