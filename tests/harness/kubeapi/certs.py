"""Certificates for the fake API server and for test webhooks.

ECDSA P-256 keys are generated in milliseconds, but we still cache the API server's own CA and
serving certificate per process so that starting a fresh server in every test stays cheap.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate and its key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


class TestCA:
    """A throw-away certificate authority that issues serving certificates.

    Used by the fake API server for itself, and by tests for their webhook servers (a cert for
    ``<svc>.<ns>.svc`` whose CA goes into the webhook configuration's ``caBundle``).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, common_name: str = "pulltag-test-ca") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem: bytes = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns_names: Iterable[str] = (), ip_addresses: Iterable[str] = ()) -> IssuedCert:
        """Issue a serving certificate valid for the given DNS names and IP addresses."""
        dns = list(dns_names)
        ips = list(ip_addresses)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cn = dns[0] if dns else (ips[0] if ips else "server")
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


@dataclass(frozen=True)
class ServingBundle:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


@functools.cache
def api_server_bundle() -> ServingBundle:
    """CA + serving certificate (SAN 127.0.0.1, ::1, localhost) for the fake API server, once per process."""
    ca = TestCA("fake-kube-apiserver-ca")
    leaf = ca.issue(
        dns_names=["localhost", "kubernetes", "kubernetes.default.svc"], ip_addresses=["127.0.0.1", "::1"]
    )
    return ServingBundle(ca_pem=ca.ca_pem, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem)
