"""A server SSLContext that follows certificate rotation without a restart.

gunicorn asks its `ssl_context` hook for a context on every new connection (in the worker thread that
does the handshake). `CertReloader.context()` answers from a cache and, at most every `interval` seconds,
looks at the certificate and key files; when their identity (inode, size, mtime) changed, it builds a
fresh context and swaps it in. Connections already established keep their context; new handshakes use the
new one. A kubelet-mounted Secret is replaced by an atomic symlink swap (`..data`), which os.stat()
follows; an in-place rewrite is caught by size/mtime. If the new pair does not load (a half-written
file, a key that does not match yet), the old context stays in use and the next check retries.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time

log = logging.getLogger(__name__)

_FileId = tuple[int, int, int, int]


def _file_id(path: str) -> _FileId:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def build_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the default secure ciphers, no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=certfile, keyfile=keyfile)
    return context


class CertReloader:
    def __init__(self, certfile: str, keyfile: str, interval: float = 10.0) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.interval = interval
        self._lock = threading.Lock()
        self._ids = self._identity()
        self._context = build_context(certfile, keyfile)
        self._next_check = time.monotonic() + interval

    def _identity(self) -> tuple[_FileId, _FileId]:
        return (_file_id(self.certfile), _file_id(self.keyfile))

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
            log.info("TLS certificate reloaded from %s", self.certfile)
        finally:
            self._lock.release()
