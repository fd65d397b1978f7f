"""Prometheus metrics of the webhook, correct across gunicorn worker processes.

Under `pulltag webhook`, `serve.py` sets PROMETHEUS_MULTIPROC_DIR to a fresh directory before gunicorn
forks; prometheus_client then keeps every value in per-process files there and `/metrics` sums them with a
`MultiProcessCollector`, so any worker answers with the totals of all. Without the variable (tests, a bare
Flask app) the metrics live in this instance's own registry.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from webhook.tls import CertificateDates

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Admission answers should take about a millisecond; the API server's default timeout is 10 s.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._admission_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pulltag_admission_requests_total",
            "Admission requests answered, by webhook and outcome.",
            ["webhook", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "pulltag_admission_duration_seconds",
            "Time to answer an admission request, by webhook.",
            ["webhook"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "pulltag_store_errors_total",
            "Store operations that failed or overran their time budget, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.store_errors.labels("put_admission")  # present from the start, so rate() works at once

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))

    def admitted(self, webhook: str, outcome: str, seconds: float) -> None:
        """Count one answered admission request and its duration. The labelled children are looked up
        once per (webhook, outcome): `labels()` takes a lock and builds a key on every call, and this
        runs for every admission."""
        children = self._admission_children.get((webhook, outcome))
        if children is None:
            children = (self.requests.labels(webhook, outcome), self.duration.labels(webhook))
            self._admission_children[(webhook, outcome)] = children
        children[0].inc()
        children[1].observe(seconds)


class CertificateMetrics:
    """The expiry of the served certificate and of its CA, written by the TLS reloader (`record`).

    The reloader runs in the gunicorn master (the first load) and in every worker (each reloads on its own
    after a rotation). `livemostrecent` shows the value written last by a live process, so the gauges follow
    the newest load and ignore dead workers. Each gauge is created at its first value: in multiprocess mode
    a gauge exists (as 0) from its creation, and a CA expiry of 0 would read as "expired". Create this after
    PROMETHEUS_MULTIPROC_DIR is set.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}

    def _set(self, name: str, documentation: str, value: float) -> None:
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = Gauge(name, documentation, registry=self.registry, multiprocess_mode="livemostrecent")
            self._gauges[name] = gauge
        gauge.set(value)

    def record(self, dates: CertificateDates) -> None:
        self._set(
            "pulltag_webhook_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (Unix time).",
            dates.certificate_not_after,
        )
        if dates.ca_not_after is not None:
            self._set(
                "pulltag_webhook_ca_expiry_timestamp_seconds",
                "When the CA that signed the serving certificate in use expires (Unix time).",
                dates.ca_not_after,
            )


def mark_process_dead(pid: int) -> None:
    """Called by the gunicorn master when a worker exits (matters for live gauges only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
