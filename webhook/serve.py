"""`pulltag webhook`: the Flask app under gunicorn (gthread workers) over TLS, run programmatically.

- TLS 1.2+, certificate and key re-read on rotation (see `webhook.tls.CertReloader`): gunicorn calls the
  `ssl_context` hook for every new connection, and the hook answers from the reloader.
- Prometheus multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set to a fresh directory here, before anything
  imports prometheus_client and before gunicorn forks; `child_exit` marks dead workers; the directory is
  removed when the master exits.
- SIGTERM: gunicorn's graceful stop (in-flight requests finish, within `graceful_timeout`), exit code 0.
- gunicorn's control socket is disabled: it would be shared by every server run by the same user.

`serve(options, load_app)` serves any WSGI app with exactly these settings; the benchmark uses it to
measure a constant endpoint against the real webhook.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from pulltag.config import Settings
from webhook.tls import CertReloader

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the same name as webhook.metrics.MULTIPROC_ENV

WSGIApp = Callable[..., Any]


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "0.0.0.0:8443"
    certfile: str = "/etc/pulltag/tls/tls.crt"
    keyfile: str = "/etc/pulltag/tls/tls.key"
    workers: int = 2
    threads: int = 4
    cert_reload_seconds: float = 10.0
    log_level: str = "info"
    graceful_timeout: int = 25
    keepalive: int = 30  # the API server keeps connections to webhooks open and reuses them


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(
        self, options: ServeOptions, load_app: Callable[[], WSGIApp], reloader: CertReloader
    ) -> None:
        self._options = options
        self._load_app = load_app
        self._reloader = reloader
        super().__init__()

    def load_config(self) -> None:
        o = self._options
        reloader = self._reloader

        def ssl_context(_config: Any, _default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            return reloader.context()

        settings: dict[str, Any] = {
            "bind": [o.bind],
            "workers": o.workers,
            "threads": o.threads,
            "worker_class": "gthread",
            "certfile": o.certfile,
            "keyfile": o.keyfile,
            "ssl_context": ssl_context,
            "graceful_timeout": o.graceful_timeout,
            "keepalive": o.keepalive,
            "timeout": 30,
            "loglevel": o.log_level.lower(),
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "pulltag-webhook",
            "control_socket_disable": True,
            "child_exit": _child_exit,
            "on_exit": _on_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        return self._load_app()


def _child_exit(_server: Any, worker: Any) -> None:
    from webhook.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def _on_exit(_server: Any) -> None:
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and os.path.basename(directory).startswith("pulltag-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)


def prepare_multiprocess_metrics() -> str:
    """A fresh metrics directory for this server; must run before prometheus_client is imported."""
    directory = tempfile.mkdtemp(prefix="pulltag-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    return directory


def serve(options: ServeOptions, load_app: Callable[[], WSGIApp]) -> int:
    """Serve the app returned by `load_app` (called in each worker after the fork) until stopped."""
    from webhook.metrics import CertificateMetrics  # after PROMETHEUS_MULTIPROC_DIR is set (see run)

    reloader = CertReloader(
        options.certfile, options.keyfile, options.cert_reload_seconds, on_load=CertificateMetrics().record
    )
    log.info("serving on https://%s (workers=%d threads=%d)", options.bind, options.workers, options.threads)
    _Application(options, load_app, reloader).run()
    return 0


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        bind=args.bind,
        certfile=args.certfile,
        keyfile=args.keyfile,
        workers=args.workers,
        threads=args.threads,
        cert_reload_seconds=args.cert_reload_seconds,
        log_level=args.log_level,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of `pulltag webhook`."""
    options = options_from_args(args)
    if options.workers < 1 or options.threads < 1 or options.cert_reload_seconds <= 0:
        log.error("--workers and --threads must be at least 1, --cert-reload-seconds positive")
        return 2
    prepare_multiprocess_metrics()

    def load_app() -> WSGIApp:
        # In the worker, after the fork: each worker has its own store connections and thread pool.
        from pulltag.store import open_store
        from webhook.app import create_app

        # No admission waits for a WAL checkpoint: a thread of each worker does them (SQLite).
        return create_app(settings, open_store(settings.store, checkpoint_in_background=True))

    try:
        return serve(options, load_app)
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot load the TLS certificate: %s", exc)
        return 1
