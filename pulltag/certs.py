"""`pulltag certs`: a private CA and the webhook's serving certificate, plus what the cluster needs of them.

Everything is ECDSA P-256. The CA (default 10 years) signs one serving ("leaf") certificate (default 1
year) for the webhook Service, with the DNS names the API server may use to reach it:
`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local` (plus `extra_sans` from the library call,
e.g. `localhost` / `127.0.0.1` for tests; IP addresses become IP SANs).

Files written to the output folder (default `manifests/base/generated/` via `certs/generate.sh`,
git-ignored); keys and the Secret manifest are mode 0600, every file is replaced atomically:

- `ca.crt`, `ca.key`         the CA (PEM; the key is PKCS#8)
- `tls.crt`, `tls.key`       the serving certificate and key (PEM)
- `secret.yaml`              `Secret` of type `kubernetes.io/tls` (`tls.crt`, `tls.key`, `ca.crt`)
- `cabundle.txt`             base64 of `ca.crt`, one line, for a WebhookConfiguration's `caBundle`
- `webhook-cabundle-patch.yaml`  a two-document strategic-merge patch for kustomize: it sets
  `webhooks[name=annotate.pulltag.dev].clientConfig.caBundle` in the MutatingWebhookConfiguration named
  `annotate.pulltag.dev`, and `webhooks[name=record.pulltag.dev].clientConfig.caBundle` in the
  ValidatingWebhookConfiguration named `record.pulltag.dev` (webhooks merge by `name`). Use it as
  `patches: [{path: generated/webhook-cabundle-patch.yaml}]` in the kustomization next to `generated/`.

Re-running keeps a CA that still loads, matches its key and is not about to expire, and renews the leaf
only when it is missing, expires within `renew_within_days`, names other SANs, or was not signed by the
current CA. `force=True` regenerates both.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pulltag.config import Settings

log = logging.getLogger(__name__)

MUTATING_WEBHOOK = "annotate.pulltag.dev"
VALIDATING_WEBHOOK = "record.pulltag.dev"
# Tolerate clocks a little behind ours (the API server's and the nodes').
_BACKDATE = dt.timedelta(minutes=5)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Kubernetes names: a Service and a namespace are DNS-1123 labels, a Secret a DNS-1123 subdomain.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class CertArgumentError(ValueError):
    """An argument no certificate should be made for; `str()` is one line naming it."""


def _check_name(option: str, value: str, *, subdomain: bool = False) -> None:
    labels = value.split(".") if subdomain else [value]
    limit = 253 if subdomain else 63
    if len(value) > limit or not all(_DNS1123_LABEL.fullmatch(label) for label in labels):
        kind = "subdomain" if subdomain else "label"
        dots = " (dots between labels)" if subdomain else ""
        raise CertArgumentError(
            f"{option} {value!r} is not a DNS-1123 {kind}: lower-case letters, digits and '-'{dots}, "
            f"starting and ending with a letter or digit, at most {limit} characters"
        )


def check_arguments(
    *, service: str, namespace: str, secret_name: str, days: int, ca_days: int, renew_within_days: int
) -> None:
    """Refuse, with one line naming the option, what Kubernetes or X.509 would refuse later."""
    if days < 1 or ca_days < 1 or renew_within_days < 0:
        raise CertArgumentError("--days and --ca-days must be at least 1, --renew-within-days at least 0")
    _check_name("--service", service)
    _check_name("--namespace", namespace)
    _check_name("--secret-name", secret_name, subdomain=True)


@dataclass(frozen=True)
class CertResult:
    out: Path
    ca_created: bool
    leaf_created: bool
    leaf_not_after: dt.datetime
    sans: tuple[str, ...]
    # Set when the CA ends before the serving lifetime asked for: the leaf ends with the CA instead.
    capped_by_ca: dt.datetime | None = None


def service_sans(service: str, namespace: str) -> list[str]:
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write-then-rename, so a reader (or a mounted-file watcher) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _san_entries(names: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def make_ca(
    days: int, now: dt.datetime, common_name: str = "pulltag-webhook-ca"
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: Sequence[str],
    days: int,
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its EC key, or None if either is missing, unreadable or they do not match."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        return None
    return cert, key


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names: set[str] = set(ext.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return names


def _normalise_san(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """`cert` names `ca` as its issuer and carries its signature."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _leaf_reason(
    leaf: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: x509.Certificate,
    sans: Sequence[str],
    renew_before: dt.datetime,
) -> str | None:
    """Why the leaf must be (re)generated, or None if it can stay."""
    if leaf is None:
        return "missing or unreadable"
    cert = leaf[0]
    if not signed_by(cert, ca):
        return "not signed by the current CA"
    if cert.not_valid_after_utc <= renew_before:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    if _sans_of(cert) != {_normalise_san(s) for s in sans}:
        return "names other hosts"
    return None


def generate(
    out: str | os.PathLike[str],
    *,
    service: str = "pulltag-webhook",
    namespace: str = "pulltag-system",
    days: int = 365,
    ca_days: int = 3650,
    renew_within_days: int = 30,
    force: bool = False,
    secret_name: str = "pulltag-webhook-tls",
    extra_sans: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> CertResult:
    """Create or renew the CA and the leaf in `out`, and (re)write the manifests derived from them."""
    check_arguments(
        service=service,
        namespace=namespace,
        secret_name=secret_name,
        days=days,
        ca_days=ca_days,
        renew_within_days=renew_within_days,
    )
    when = now or dt.datetime.now(dt.UTC)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    sans = [*service_sans(service, namespace), *(s for s in extra_sans if s)]
    renew_before = when + dt.timedelta(days=renew_within_days)

    ca = None if force else _load_pair(folder / "ca.crt", folder / "ca.key")
    ca_created = ca is None or ca[0].not_valid_after_utc <= renew_before
    if ca is None or ca_created:
        ca = make_ca(ca_days, when)
        _write(folder / "ca.key", pem_key(ca[1]), 0o600)
        _write(folder / "ca.crt", pem_cert(ca[0]))
        log.info("created a new CA in %s", folder)

    leaf = None if force or ca_created else _load_pair(folder / "tls.crt", folder / "tls.key")
    reason = _leaf_reason(leaf, ca[0], sans, renew_before)
    capped_by_ca = None
    if reason is not None or leaf is None:
        log.info("creating the serving certificate (%s)", reason or "forced")
        leaf = make_leaf(ca[0], ca[1], sans, days, when)
        # Key first: a server that reloads on the certificate's change then finds the matching key.
        _write(folder / "tls.key", pem_key(leaf[1]), 0o600)
        _write(folder / "tls.crt", pem_cert(leaf[0]))
        if ca[0].not_valid_after_utc < when + dt.timedelta(days=days):
            capped_by_ca = ca[0].not_valid_after_utc
    _write_manifests(folder, ca[0], leaf, secret_name, namespace)
    return CertResult(
        folder, ca_created, reason is not None, leaf[0].not_valid_after_utc, tuple(sans), capped_by_ca
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_manifests(
    folder: Path,
    ca: x509.Certificate,
    leaf: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    secret_name: str,
    namespace: str,
) -> None:
    bundle = _b64(pem_cert(ca))
    secret = (
        "apiVersion: v1\n"
        "kind: Secret\n"
        "metadata:\n"
        f"  name: {secret_name}\n"
        f"  namespace: {namespace}\n"
        "type: kubernetes.io/tls\n"
        "data:\n"
        f"  tls.crt: {_b64(pem_cert(leaf[0]))}\n"
        f"  tls.key: {_b64(pem_key(leaf[1]))}\n"
        f"  ca.crt: {bundle}\n"
    )
    _write(folder / "secret.yaml", secret.encode(), 0o600)
    _write(folder / "cabundle.txt", (bundle + "\n").encode())
    patch = "---\n".join(
        "apiVersion: admissionregistration.k8s.io/v1\n"
        f"kind: {kind}\n"
        "metadata:\n"
        f"  name: {name}\n"
        "webhooks:\n"
        f"  - name: {name}\n"
        "    clientConfig:\n"
        f"      caBundle: {bundle}\n"
        for kind, name in (
            ("MutatingWebhookConfiguration", MUTATING_WEBHOOK),
            ("ValidatingWebhookConfiguration", VALIDATING_WEBHOOK),
        )
    )
    _write(folder / "webhook-cabundle-patch.yaml", patch.encode())


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of `pulltag certs`."""
    del settings  # certificates do not depend on the configuration file
    try:
        result = generate(
            args.out,
            service=args.service,
            namespace=args.namespace,
            days=args.days,
            ca_days=args.ca_days,
            renew_within_days=args.renew_within_days,
            force=args.force,
            secret_name=args.secret_name,
        )
    except CertArgumentError as exc:
        print(f"pulltag certs: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"pulltag certs: {exc}", file=sys.stderr)
        return 1
    print(f"CA:   {'created' if result.ca_created else 'kept'} ({result.out / 'ca.crt'})")
    print(
        f"leaf: {'created' if result.leaf_created else 'kept'} ({result.out / 'tls.crt'}), "
        f"valid until {result.leaf_not_after:%Y-%m-%d}, for {', '.join(result.sans)}"
    )
    print(f"wrote secret.yaml, cabundle.txt, webhook-cabundle-patch.yaml in {result.out}")
    if result.capped_by_ca is not None:
        ends = f"{result.capped_by_ca:%Y-%m-%d}"
        print(
            f"pulltag certs: warning: the CA expires {ends}, before the {args.days} days asked for:"
            " the serving certificate ends with it (raise --ca-days and renew both with --force)",
            file=sys.stderr,
        )
    return 0


# --- for the listener's in-cluster certificate manager (listener/certificates.py) ---------------------


def sans_match(cert: x509.Certificate, sans: Sequence[str]) -> bool:
    """`cert` names exactly these hosts (IP addresses compared as addresses, DNS names case-blind)."""
    return _sans_of(cert) == {_normalise_san(s) for s in sans}


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    """An EC private key from PEM, or None when it is not one."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    public = cert.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == (
        key.public_key().public_numbers()
    )
