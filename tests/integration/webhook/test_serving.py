"""Serving under gunicorn: metrics across workers, SIGTERM, certificate rotation under load, no secrets."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pulltag.certs import make_leaf, service_sans
from pulltag.store import open_store
from tests.harness.procs import free_port, wait_for
from tests.harness.redis import RedisServer
from tests.harness.webhook import SERVICE_HOST, client_context, make_certs, pod_review
from tests.integration.webhook.conftest import StartServer


def counter(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def test_metrics_add_up_across_workers(start_server: StartServer) -> None:
    server = start_server(workers=2)
    metrics_dirs = list((server.workdir / "tmp").glob("pulltag-metrics-*"))
    assert len(metrics_dirs) == 1
    sent = 0

    def both_workers_counted() -> bool:
        # A new connection per request; the kernel picks the worker. Each worker writes its own file.
        nonlocal sent
        status, _ = server.post_json("/validate", pod_review(uid=f"r{sent}", pod_uid=f"p{sent}"))
        assert status == 200
        sent += 1
        return sent >= 20 and len(list(metrics_dirs[0].glob("counter_*.db"))) == 2

    wait_for(both_workers_counted, 60, "requests served by both workers")
    n = sent
    for _ in range(6):  # every scrape, whichever worker answers it, reports the total
        status, body = server.get("/metrics")
        assert status == 200
        text = body.decode()
        assert counter(text, "pulltag_admission_requests_total", webhook="validate") == n
        assert counter(text, "pulltag_admission_requests_total", webhook="validate", outcome="recorded") == n
        assert counter(text, "pulltag_admission_duration_seconds_count", webhook="validate") == n


def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    start_server: StartServer, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/term.db"
    server = start_server(store_url, workers=1)
    body = json.dumps(
        pod_review(pod_uid="in-flight", containers={"app": "harbor.example.com/a/b:1"})
    ).encode()
    head = (
        f"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    context = client_context(server.ca_file)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_HOST) as tls,
    ):
        # The handshake is done by a worker thread, so the request is now in a worker: half a body.
        tls.sendall(head + body[: len(body) // 2])
        assert server.process is not None
        server.process.signal(signal.SIGTERM)
        server.wait_log("Handling signal: term")
        tls.sendall(body[len(body) // 2 :])
        data = b""
        while True:
            piece = tls.recv(65536)
            if not piece:
                break
            data += piece
    head_part, _, payload = data.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["response"] == {"uid": "req-1", "allowed": True}
    assert server.process.proc is not None
    assert server.process.proc.wait(timeout=30) == 0
    store = open_store(store_url)
    try:
        assert store.get_admission("in-flight") is not None
    finally:
        store.close()


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def _secret_mount(folder: Path, version: str, source: Path) -> None:
    """Lay out `folder` as the kubelet does for a Secret volume, pointing ..data at a new version."""
    target = folder / f"..{version}"
    target.mkdir()
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (target / name).write_bytes((source / name).read_bytes())
    tmp_link = folder / "..data_tmp"
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, folder / "..data")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


def test_rotated_certificates_are_served_without_restart_or_failed_requests(
    start_server: StartServer, tmp_path: Path
) -> None:
    issued = make_certs(tmp_path / "issued")
    mount = tmp_path / "mount"
    mount.mkdir()
    _secret_mount(mount, "v1", issued)
    server = start_server(workers=2, threads=4, certs=mount, cert_reload_seconds=0.5)
    first = _serial(server.peer_certificate())

    stop = threading.Event()
    done = [0] * 4
    failures: list[str] = []

    def client(index: int, reuse: bool) -> None:
        session = server.session()
        try:
            while not stop.is_set():
                if not reuse:
                    session.close()  # a new connection (and handshake) for every request
                review = pod_review(uid=f"c{index}-{done[index]}", pod_uid=f"c{index}-{done[index]}")
                try:
                    resp = session.post(server.url("/validate"), json=review, timeout=10)
                    if resp.status_code != 200 or resp.json()["response"]["allowed"] is not True:
                        failures.append(f"{resp.status_code} {resp.text[:100]}")
                except Exception as exc:
                    failures.append(repr(exc))
                done[index] += 1
        finally:
            session.close()

    threads = [threading.Thread(target=client, args=(i, i % 2 == 0)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: min(done) >= 5, 30, "clients under way")

        # 1) a Secret update: the kubelet swaps the ..data symlink to a new directory
        second = _renew_leaf(issued)
        _secret_mount(mount, "v2", issued)
        assert second != first
        wait_for(lambda: _serial(server.peer_certificate()) == second, 60, "the swapped certificate served")

        # 2) an in-place rewrite of the files
        marks = list(done)
        third = _renew_leaf(issued)
        target = (mount / "..data").resolve()
        (target / "tls.key").write_bytes((issued / "tls.key").read_bytes())
        (target / "tls.crt").write_bytes((issued / "tls.crt").read_bytes())
        wait_for(lambda: _serial(server.peer_certificate()) == third, 60, "the rewritten certificate served")
        wait_for(
            lambda: all(d >= m + 5 for d, m in zip(done, marks, strict=True)), 30, "clients after rotation"
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert sum(done) > 40
    assert "Traceback" not in server.log_text()


def _renew_leaf(folder: Path) -> int:
    """A new serving certificate from the same CA (as a renewal does); returns its serial."""
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    sans = [*service_sans("pulltag-webhook", "pulltag-system"), "localhost", "127.0.0.1"]
    cert, key = make_leaf(ca_cert, ca_key, sans, 30, dt.datetime.now(dt.UTC))
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert.serial_number


@pytest.fixture(scope="module")
def guarded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server that wants another password than the one the webhook is given."""
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password="the-real-one").start()
    yield server
    server.stop()


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("where", ["nothing-listening", "wrong-password"])
def test_a_redis_password_never_appears_in_logs_or_metrics(
    start_server: StartServer, guarded_redis: RedisServer, log_format: str, where: str
) -> None:
    password = "Sup3r-s3cret-pw"
    port = free_port() if where == "nothing-listening" else guarded_redis.port
    server = start_server(f"redis://:{password}@127.0.0.1:{port}/3", workers=1, log_format=log_format)
    status, answer = server.post_json("/validate", pod_review(pod_uid="x"))
    assert status == 200 and answer["response"]["allowed"] is True
    server.wait_log("admission record not written")
    _, metrics = server.get("/metrics")
    assert counter(metrics.decode(), "pulltag_store_errors_total", operation="put_admission") == 1
    assert password not in metrics.decode()
    assert password not in json.dumps(answer)
    assert server.stop() == 0
    log = server.log_text()
    assert "admission record not written" in log
    assert password not in log
    if log_format == "json":
        lines = [json.loads(line) for line in log.splitlines() if "admission record not written" in line]
        assert lines and lines[0]["operation"] == "put_admission" and lines[0]["uid"] == "x"
