"""A server SSLContext that follows certificate rotation without a restart.

gunicorn asks its `ssl_context` hook for a context on every new connection (in the worker thread that
does the handshake). `CertReloader.context()` answers from a cache and, at most every `interval` seconds,
looks at the certificate and key files; when their identity (inode, size, mtime) changed, it builds a
fresh context and swaps it in. Connections already established keep their context; new handshakes use the
new one. A kubelet-mounted Secret is replaced by an atomic symlink swap (`..data`), which os.stat()
follows; an in-place rewrite is caught by size/mtime. If the new pair does not load (a half-written
file, a key that does not match yet), the old context stays in use and the next check retries.

Each time a pair is loaded, `on_load` gets the expiry dates of what is now served (see `certificate_dates`):
the metrics follow the certificate actually in use, not the files on disk.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from pulltag.certs import signed_by

log = logging.getLogger(__name__)

_FileId = tuple[int, int, int, int]
_NO_FILE: _FileId = (0, 0, 0, 0)


def _file_id(path: str) -> _FileId:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _optional_file_id(path: str) -> _FileId:
    try:
        return _file_id(path)
    except FileNotFoundError:
        return _NO_FILE


@dataclass(frozen=True)
class CertificateDates:
    """When the served certificate and the CA that signed it expire (Unix seconds; CA None if unknown)."""

    certificate_not_after: float
    ca_not_after: float | None


def certificate_dates(cert_pem: bytes, ca_pem: bytes | None) -> CertificateDates:
    """The expiry of the leaf (first certificate of `cert_pem`) and of its issuer.

    The issuer is looked up in the rest of the chain, then in `ca_pem` (the Secret's `ca.crt`, which may
    hold several CAs while a new one is rolled in): the CA whose signature the leaf carries is the one that
    matters, so an old and a new CA with the same name are told apart by the signature. Raises ValueError
    when `cert_pem` holds no certificate.
    """
    chain = x509.load_pem_x509_certificates(cert_pem)
    leaf, candidates = chain[0], chain[1:]
    if ca_pem:
        try:
            candidates += x509.load_pem_x509_certificates(ca_pem)
        except ValueError:
            log.warning("the CA file holds no PEM certificate; the CA expiry is not known")
    issuer = next((c for c in candidates if signed_by(leaf, c)), None)
    return CertificateDates(
        leaf.not_valid_after_utc.timestamp(),
        issuer.not_valid_after_utc.timestamp() if issuer is not None else None,
    )


def default_cafile(certfile: str) -> str:
    """`ca.crt` next to the certificate: where a kubernetes.io/tls Secret (cert-manager's, `pulltag certs`'s)
    mounts the CA."""
    return str(Path(certfile).with_name("ca.crt"))


def build_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the default secure ciphers, no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=certfile, keyfile=keyfile)
    return context


class CertReloader:
    def __init__(
        self,
        certfile: str,
        keyfile: str,
        interval: float = 10.0,
        *,
        cafile: str | None = None,
        on_load: Callable[[CertificateDates], None] | None = None,
    ) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.cafile = cafile if cafile is not None else default_cafile(certfile)
        self.interval = interval
        self._on_load = on_load
        self._lock = threading.Lock()
        self._ids = self._identity()
        self._context = build_context(certfile, keyfile)
        self._report()
        self._next_check = time.monotonic() + interval

    def _identity(self) -> tuple[_FileId, _FileId, _FileId]:
        # ca.crt is optional; a change of it alone (a CA rolled in) also refreshes the reported dates.
        return (_file_id(self.certfile), _file_id(self.keyfile), _optional_file_id(self.cafile))

    def _report(self) -> None:
        if self._on_load is None:
            return
        try:
            ca_pem = Path(self.cafile).read_bytes() if os.path.exists(self.cafile) else None
            dates = certificate_dates(Path(self.certfile).read_bytes(), ca_pem)
        except (OSError, ValueError) as exc:
            # Serving goes on; the dates are refreshed at the next change of the files.
            log.warning("cannot read the expiry dates of the TLS certificate: %s", exc)
            return
        self._on_load(dates)

    def context(self) -> ssl.SSLContext:
        if time.monotonic() >= self._next_check:
            self._maybe_reload()
        return self._context

    def _maybe_reload(self) -> None:
        # Only one thread checks; the others keep using the current context meanwhile.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if time.monotonic() < self._next_check:
                return
            self._next_check = time.monotonic() + self.interval
            try:
                ids = self._identity()
            except OSError as exc:
                log.warning("cannot stat the TLS certificate files, keeping the current ones: %s", exc)
                return
            if ids == self._ids:
                return
            try:
                context = build_context(self.certfile, self.keyfile)
            except (OSError, ssl.SSLError) as exc:
                # Possibly mid-rotation (certificate written, key not yet): retry at the next check.
                log.warning("new TLS certificate does not load yet, keeping the current one: %s", exc)
                return
            self._context = context
            self._ids = ids
            self._report()
            log.info("TLS certificate reloaded from %s", self.certfile)
        finally:
            self._lock.release()
