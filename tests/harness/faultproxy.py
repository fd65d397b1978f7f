"""A small threaded HTTP reverse proxy that injects faults in front of a real server (the docker-registry).

Clients talk to the proxy's host:port as if it were the registry: requests are forwarded with their
`Host` header unchanged (so URLs the registry builds name the proxy), responses are relayed as they are.
Faults, switched at any time from the test:

- `fail(share, statuses, retry_after)`: a random share of requests is answered by the proxy itself with
  one of `statuses` (500, 503, 429 with `Retry-After`), in the registry's error JSON;
- `delay(seconds)`: every forwarded request waits this long first (a slow registry: work is in flight);
- `go_down()` / `come_up()`: stop listening and drop every open connection (connection refused), then
  listen again on the same port; `unreachable(seconds)` does both around a pause.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass
class ProxyStats:
    forwarded: int = 0
    injected: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)  # by method: forwarded, not answered yet
    by_status: dict[int, int] = field(default_factory=dict)


@dataclass
class _Faults:
    share: float = 0.0
    statuses: tuple[int, ...] = (500,)
    retry_after: int | None = None
    path_contains: str | None = None
    delay: float = 0.0
    delay_method: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)
        if self._upstream is not None:
            self._upstream.close()

    def handle(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            super().handle()

    def do_GET(self) -> None:
        self._proxy("GET")

    def do_HEAD(self) -> None:
        self._proxy("HEAD")

    def do_PUT(self) -> None:
        self._proxy("PUT")

    def do_POST(self) -> None:
        self._proxy("POST")

    def do_PATCH(self) -> None:
        self._proxy("PATCH")

    def do_DELETE(self) -> None:
        self._proxy("DELETE")

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self, method: str) -> None:
        proxy = self.server.proxy
        body = self._body()
        injected = proxy._pick_fault(self.path)
        if injected is not None:
            status, retry_after = injected
            self._answer_fault(method, status, retry_after)
            return
        proxy._flight(method, +1)
        try:
            self._relay(method, body)
        finally:
            proxy._flight(method, -1)

    def _relay(self, method: str, body: bytes) -> None:
        proxy = self.server.proxy
        faults = proxy._faults
        if faults.delay and faults.delay_method in (None, method):
            time.sleep(faults.delay)  # the fault itself: a slow registry
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or method in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        try:
            status, reason, resp_headers, data = self._forward(method, headers, body)
        except (OSError, http.client.HTTPException):
            # The upstream connection went stale: one fresh attempt, then give up like a gateway.
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None
            try:
                status, reason, resp_headers, data = self._forward(method, headers, body)
            except (OSError, http.client.HTTPException):
                self._answer_fault(method, 502, None)
                return
        self.send_response(status, reason)
        for key, value in resp_headers:
            if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                continue
            self.send_header(key, value)
        if method == "HEAD":
            length = next((v for k, v in resp_headers if k.lower() == "content-length"), None)
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)
        proxy._count(status, injected=False)

    def _forward(
        self, method: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        if self._upstream is None:
            host, port = self.server.proxy.target
            self._upstream = http.client.HTTPConnection(host, port, timeout=30)
        self._upstream.request(method, self.path, body=body or None, headers=headers)
        response = self._upstream.getresponse()
        data = response.read()
        return response.status, response.reason, response.getheaders(), data

    def _answer_fault(self, method: str, status: int, retry_after: int | None) -> None:
        code = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
        data = json.dumps({"errors": [{"code": code, "message": "injected fault", "detail": None}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)
        self.server.proxy._count(status, injected=True)


class FaultProxy:
    """`FaultProxy("127.0.0.1:5000").start()`; point clients at `proxy.host`."""

    def __init__(self, target: str, *, seed: int | None = None) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = 0
        self.stats = ProxyStats()
        self._faults = _Faults()
        self._rand = random.Random(seed)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        deadline = time.monotonic() + 10
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the old socket of this port is still closing
        server.proxy = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def go_down(self) -> None:
        """Stop listening (connections are refused) and drop every open connection."""
        self.stop()

    def come_up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self.start()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        self.go_down()
        try:
            yield
        finally:
            self.come_up()

    def unreachable(self, seconds: float) -> None:
        """Refuse connections for `seconds` (the pause is the scenario), then answer again."""
        with self.down():
            time.sleep(seconds)

    # -- faults -------------------------------------------------------------------------------------------

    def fail(
        self,
        share: float,
        statuses: Sequence[int] = (500, 503, 429),
        *,
        retry_after: int | None = 1,
        path_contains: str | None = None,
    ) -> None:
        """Answer a random `share` (0..1) of requests with one of `statuses`; 429 and 503 carry
        `Retry-After: retry_after` (None: no header)."""
        with self._lock:
            self._faults.share = share
            self._faults.statuses = tuple(statuses)
            self._faults.retry_after = retry_after
            self._faults.path_contains = path_contains

    def delay(self, seconds: float, method: str | None = None) -> None:
        """Forward requests (of `method`, if given) only after `seconds`."""
        with self._lock:
            self._faults.delay = seconds
            self._faults.delay_method = method

    def in_flight(self, method: str | None = None) -> int:
        """Requests (of `method`) forwarded or waiting to be, not answered yet."""
        with self._lock:
            counts = self.stats.in_flight
            return sum(counts.values()) if method is None else counts.get(method, 0)

    def clear(self) -> None:
        with self._lock:
            self._faults = _Faults()

    # -- internals -----------------------------------------------------------------------------------

    def _pick_fault(self, path: str) -> tuple[int, int | None] | None:
        with self._lock:
            f = self._faults
            if f.share <= 0 or (f.path_contains and f.path_contains not in path):
                return None
            if self._rand.random() >= f.share:
                return None
            status = self._rand.choice(f.statuses)
            return status, (f.retry_after if status in (429, 503) else None)

    def _flight(self, method: str, change: int) -> None:
        with self._lock:
            self.stats.in_flight[method] = self.stats.in_flight.get(method, 0) + change

    def _count(self, status: int, *, injected: bool) -> None:
        with self._lock:
            if injected:
                self.stats.injected += 1
            else:
                self.stats.forwarded += 1
            self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
