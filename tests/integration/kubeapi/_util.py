"""Helpers for the fidelity tests: condition waits with deadlines, raw HTTP, a watch reader."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from tests.harness.kubeapi import FakeKubeAPI


def wait_for(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def pod(
    name: str = "",
    namespace: str = "default",
    image: str = "registry.example/app:1",
    labels: dict[str, str] | None = None,
    generate_name: str = "",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def event(
    name: str,
    namespace: str = "default",
    reason: str = "Pulled",
    pod_name: str = "p",
    etype: str = "Normal",
    component: str = "kubelet",
    field_path: str = "spec.containers{app}",
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "kind": "Pod",
            "namespace": namespace,
            "name": pod_name,
            "uid": f"uid-{pod_name}",
            "fieldPath": field_path,
            "apiVersion": "v1",
        },
        "reason": reason,
        "type": etype,
        "message": f"{reason} something",
        "source": {"component": component, "host": "node-1"},
        "reportingComponent": component,
    }


class Raw:
    """Plain HTTPS calls with a bearer token (to look at exact status codes, headers and bodies)."""

    def __init__(self, api: FakeKubeAPI, token: str | None = None) -> None:
        self.api = api
        self.session = requests.Session()
        self.session.verify = api.ca_file
        self.session.headers["Authorization"] = f"Bearer {token or api.admin_token}"

    def __call__(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **kw: Any
    ) -> requests.Response:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        # verify per request: REQUESTS_CA_BUNDLE in the environment would override session.verify.
        return self.session.request(
            method, self.api.url + path, data=data, headers=headers, timeout=10, verify=self.api.ca_file, **kw
        )


class WatchReader:
    """A watch over a raw TLS socket, parsed on a thread; tests pull events with deadlines.

    Raw sockets (not requests) so that ``close()`` can cut the connection at once and the test can
    tell a clean end of the chunked body (``ended_cleanly``) from a dropped connection."""

    def __init__(self, api: FakeKubeAPI, path: str, token: str | None = None) -> None:
        ctx = ssl.create_default_context(cafile=api.ca_file)
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        self.sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token or api.admin_token}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
        self.file = self.sock.makefile("rb")
        status_line = self.file.readline().decode()
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while line := self.file.readline().decode().strip():
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ended_cleanly = False
        self.error: BaseException | None = None
        if self.status != 200:
            self.body = json.loads(self.file.read(int(self.headers.get("content-length", "0"))))
            self.events.put(None)
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sock.settimeout(None)
            while True:
                size_line = self.file.readline()
                if not size_line:
                    raise ConnectionError("connection closed mid-stream")
                size = int(size_line.strip(), 16)
                if size == 0:
                    self.ended_cleanly = True
                    return
                data = self.file.read(size)
                self.file.read(2)
                for line in data.splitlines():
                    if line.strip():
                        self.events.put(json.loads(line))
        except Exception as e:  # a dropped connection is what some tests provoke
            self.error = e
        finally:
            self.events.put(None)

    def next(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next event, or None when the stream ended; AssertionError on timeout."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s") from None

    def expect_nothing(self, within: float) -> None:
        """Assert no event arrives within ``within`` seconds (a bounded negative check, not a sync)."""
        try:
            ev = self.events.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected watch event {ev}")

    def collect(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next(max(0.01, deadline - time.monotonic()))
            if ev is None:
                break
            out.append(ev)
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
