"""First contact: each way a new registry setup goes wrong gets an error that names its cause.

Against real servers: the docker-registry (distribution), the fake Harbor over TLS, a TLS server whose
certificate names another host, and a name that cannot resolve. No message ever carries a credential.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from listener.registry import (
    AuthenticationFailed,
    Credentials,
    NotFound,
    RegistryUnavailable,
    RetryPolicy,
    registry_client,
)
from listener.registry.cli import run_check
from pulltag.config import RegistrySettings, Settings
from tests.harness.dockerconfig import write_docker_config
from tests.harness.harbor import FakeHarbor
from tests.harness.registry import PASSWORDS, RegistryServer

ONCE = RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0)
SECRET = PASSWORDS["admin"]
ELSEWHERE = "registry.elsewhere.example"


# ---------------------------------------------------------------------------------------------------
# A real TLS server whose certificate (signed by its own CA) names another host


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
    )


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def elsewhere_tls(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(host:port on 127.0.0.1, CA file) of an HTTPS server whose certificate names only another host."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "first-contact test CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ELSEWHERE)])
    ca = (
        _certificate(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        _certificate(leaf_name, ca_name, key)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("registry.elsewhere.example")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert ipaddress.ip_address(server.server_address[0]).is_loopback
    yield f"127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()
    thread.join(10)


# ---------------------------------------------------------------------------------------------------
# TLS


def test_unknown_ca_says_so_and_points_at_ca_file(fake_harbor_tls: FakeHarbor) -> None:
    settings = fake_harbor_tls.settings(ca_file=None)
    with registry_client(settings, retry=ONCE) as client, pytest.raises(RegistryUnavailable) as caught:
        client.check()
    message = str(caught.value)
    assert "unknown CA" in message and "ca_file" in message
    assert "name mismatch" not in message


def test_name_mismatch_says_so(elsewhere_tls: tuple[str, Path]) -> None:
    host, ca_file = elsewhere_tls
    settings = RegistrySettings(host=host, ca_file=str(ca_file), connect_timeout=2, read_timeout=5)
    with registry_client(settings, retry=ONCE) as client, pytest.raises(RegistryUnavailable) as caught:
        client.check()
    message = str(caught.value)
    assert "name mismatch" in message and "127.0.0.1" in message and "ca_file" in message
    assert "unknown CA" not in message


def test_the_same_server_without_its_ca_is_an_unknown_ca(elsewhere_tls: tuple[str, Path]) -> None:
    host, _ = elsewhere_tls
    settings = RegistrySettings(host=host, connect_timeout=2, read_timeout=5)
    with registry_client(settings, retry=ONCE) as client, pytest.raises(RegistryUnavailable) as caught:
        client.check()
    assert "unknown CA" in str(caught.value)


# ---------------------------------------------------------------------------------------------------
# DNS


def test_a_name_that_does_not_resolve_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    # .invalid never resolves (RFC 2606), with or without a resolver on this machine.
    settings = RegistrySettings(host="registry.pulltag-first-contact.invalid", connect_timeout=2)
    with registry_client(settings, retry=ONCE) as client, pytest.raises(RegistryUnavailable) as caught:
        client.check()
    assert "registry.pulltag-first-contact.invalid did not resolve (DNS)" in str(caught.value)


def test_a_refused_connection_is_not_called_a_dns_problem() -> None:
    settings = RegistrySettings(host="127.0.0.1:1", insecure=True, connect_timeout=2)
    with registry_client(settings, retry=ONCE) as client, pytest.raises(RegistryUnavailable) as caught:
        client.check()
    assert "connection refused" in str(caught.value) and "DNS" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------
# A plain OCI registry configured as Harbor


def test_plain_registry_as_harbor_hints_type_oci(oci_registry: RegistryServer) -> None:
    settings = oci_registry.settings(user=None, type="harbor")
    with registry_client(settings, retry=ONCE) as client, pytest.raises(NotFound) as caught:
        client.check()
    assert "type: oci" in str(caught.value)


def test_plain_registry_as_harbor_hints_type_oci_when_tagging(oci_registry: RegistryServer) -> None:
    repo = f"project/{oci_registry.new_repository()}"
    digest = oci_registry.seed_image(repo, "v1")
    settings = oci_registry.settings(user=None, type="harbor")
    with registry_client(settings, retry=ONCE) as client, pytest.raises(NotFound) as caught:
        client.create_tag(repo, digest, "deployed_1")
    assert "type: oci" in str(caught.value)


def test_real_harbor_not_found_keeps_its_plain_answer(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    with registry_client(fake_harbor.settings(), retry=ONCE) as client, pytest.raises(NotFound) as caught:
        client.digest_of(repo, "v404")
    assert "type: oci" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------
# Credentials that match no host


def _mismatched(registry: RegistryServer, tmp_path: Path) -> RegistrySettings:
    creds = write_docker_config(tmp_path / "config.json", {"other.example.com": Credentials("admin", SECRET)})
    return registry.settings(user=None, credentials=str(creds))


def test_registry_check_fails_when_no_credential_matches_the_host(
    htpasswd_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(registries=(_mismatched(htpasswd_registry, tmp_path),))
    assert run_check(argparse.Namespace(repository=None), settings) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"no credential matches host {htpasswd_registry.host}" in text
    assert "other.example.com" in text  # what the file does hold
    assert "anonymous" not in text and SECRET not in text


def test_anonymous_registry_with_mismatched_credentials_still_fails_the_check(
    oci_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without the rule this prints "reachable, anonymous, push allowed: unknown" and exits 0.
    settings = Settings(registries=(_mismatched(oci_registry, tmp_path),))
    assert run_check(argparse.Namespace(repository=None), settings) == 1
    assert "no credential matches host" in capsys.readouterr().out


def test_tagging_with_no_matching_credential_says_which_file(
    htpasswd_registry: RegistryServer, tmp_path: Path
) -> None:
    repo = htpasswd_registry.new_repository()
    digest = htpasswd_registry.seed_image(repo, "v1")
    settings = _mismatched(htpasswd_registry, tmp_path)
    with registry_client(settings, retry=ONCE) as client, pytest.raises(AuthenticationFailed) as caught:
        client.create_tag(repo, digest, "deployed_1")
    message = str(caught.value)
    assert "no credential matches host" in message and str(tmp_path / "config.json") in message
    assert SECRET not in message
