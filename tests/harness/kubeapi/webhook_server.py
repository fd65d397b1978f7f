"""A tiny HTTPS admission webhook for tests of the admission chain (not pulltag's webhook)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .certs import IssuedCert

Review = dict[str, Any]
# (path, AdmissionReview.request) -> AdmissionReview.response fields (uid is filled in for you)
Decide = Callable[[str, Review], dict[str, Any]]


def patch_response(ops: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An ``allowed`` response carrying a base64 JSONPatch."""
    return {
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": base64.b64encode(json.dumps(ops).encode()).decode(),
        **extra,
    }


class TestWebhookServer:
    __test__ = False

    def __init__(self, decide: Decide, cert: IssuedCert, host: str = "127.0.0.1") -> None:
        self.decide = decide
        self.requests: list[tuple[str, Review]] = []  # (path with query, AdmissionReview)
        self.connections = 0  # TCP connections accepted (the chain keeps them alive and reuses them)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._dir = tempfile.mkdtemp(prefix="test-webhook-")
        cert_file, key_file = os.path.join(self._dir, "tls.crt"), os.path.join(self._dir, "tls.key")
        with open(cert_file, "wb") as f:
            f.write(cert.cert_pem)
        with open(key_file, "wb") as f:
            f.write(cert.key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                review = json.loads(body)
                outer.requests.append((self.path, review))
                response = dict(outer.decide(self.path.split("?", 1)[0], review["request"]))
                response["uid"] = review["request"]["uid"]
                data = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def get_request(self) -> Any:
                sock, addr = self.socket.accept()
                wrapped = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                with outer._lock:
                    outer.connections += 1
                    outer._open.add(wrapped)  # wrap_socket took over sock's descriptor
                return wrapped, addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self._server = Server((host, 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> TestWebhookServer:
        self._thread.start()
        return self

    def drop_connections(self) -> None:
        """Close every accepted connection, as a server does with idle keep-alive connections."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()
        self.drop_connections()  # kept-alive connections must not outlive the server
