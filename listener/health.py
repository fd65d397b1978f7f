"""/healthz, /readyz and /metrics over plain HTTP on --metrics-bind."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from listener.metrics import CONTENT_TYPE_LATEST, ListenerMetrics

log = logging.getLogger(__name__)

# (ok, one-line explanation)
Check = Callable[[], tuple[bool, str]]


def parse_bind(bind: str) -> tuple[str, int]:
    """`host:port`, `:port` or `[v6]:port` → (host, port)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-bind: {bind!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class HealthServer:
    def __init__(self, bind: str, metrics: ListenerMetrics, healthy: Check, ready: Check) -> None:
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        host, port = parse_bind(bind)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("serving /healthz /readyz /metrics on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, server.metrics.render(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    check = server.healthy if path == "/healthz" else server.ready
                    try:
                        ok, why = check()
                    except Exception as exc:  # a failing check is an unhealthy answer, not a 500 trace
                        ok, why = False, f"check failed: {exc}"
                    self._reply(200 if ok else 503, (why or "ok").encode() + b"\n", "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("health: " + format, *args)

        return Handler
