"""CertReloader: a new certificate is picked up after a change, a broken one is not."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509

from tests.harness.webhook import make_certs
from webhook.tls import CertReloader


def served_serial(context: ssl.SSLContext, ca_file: Path) -> int:
    """Handshake over a socketpair with `context` as the server; the serial the client saw."""
    server_sock, client_sock = socket.socketpair()
    result: list[int] = []

    def serve() -> None:
        with context.wrap_socket(server_sock, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context(cafile=str(ca_file))
    with client.wrap_socket(client_sock, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        result.append(x509.load_der_x509_certificate(der).serial_number)
        tls.sendall(b"x")
    thread.join(5)
    return result[0]


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_reload_after_rotation_and_keep_on_broken_files(tmp_path: Path) -> None:
    live = make_certs(tmp_path / "live")
    reloader = CertReloader(str(live / "tls.crt"), str(live / "tls.key"), interval=0.0)
    first = serial(live / "tls.crt")
    assert served_serial(reloader.context(), live / "ca.crt") == first

    # A certificate whose key does not match (a rotation caught half way) is not taken.
    other = make_certs(tmp_path / "other")
    shutil.copy(other / "tls.crt", live / "tls.crt")
    assert served_serial(reloader.context(), live / "ca.crt") == first

    # Once the key matches, the next handshake serves the new certificate.
    renewed = make_certs(tmp_path / "renewed")
    shutil.copy(renewed / "ca.crt", live / "ca.crt")
    shutil.copy(renewed / "tls.key", live / "tls.key")
    shutil.copy(renewed / "tls.crt", live / "tls.crt")
    assert served_serial(reloader.context(), live / "ca.crt") == serial(renewed / "tls.crt")


def test_no_check_before_the_interval(tmp_path: Path) -> None:
    live = make_certs(tmp_path / "live")
    reloader = CertReloader(str(live / "tls.crt"), str(live / "tls.key"), interval=3600.0)
    context = reloader.context()
    renewed = make_certs(tmp_path / "renewed")
    shutil.copy(renewed / "tls.key", live / "tls.key")
    shutil.copy(renewed / "tls.crt", live / "tls.crt")
    assert reloader.context() is context
