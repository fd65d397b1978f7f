"""WAL checkpoints off the write path, for an SQLite store whose commits must not pause (the webhook's).

SQLite checkpoints a WAL database automatically inside the commit that grows the WAL past 1,000 pages:
that commit copies the WAL's pages into the database file and syncs it. Measured under the webhook
benchmark, such a commit took 3-13 ms against ~0.1 ms for an ordinary one, and every admission queued
behind it waited as long; it was most of the webhook's paced p99 (BENCHMARKS.md, 2026-12-01 "checkpoints").

With a `BackgroundCheckpointer`, the store's connections turn the automatic checkpoint off
(`wal_autocheckpoint = 0`) and one daemon thread per process runs a PASSIVE checkpoint every `interval`
seconds instead. PASSIVE never waits for readers or writers: it copies what it can and returns. The
sqlite3 module releases the GIL while SQLite works, so commits and requests go on meanwhile.

A failed round is logged (at most once a minute while failures last) and tried again at the next
interval; the WAL grows meanwhile, and connections of other processes (the listener, `pulltag` commands)
still checkpoint automatically. The thread starts at the first write in each process, so a gunicorn
worker forked after the store was created gets its own.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.5  # seconds; at ~1,000 commits/s the WAL then stays around 10 MB
_LOG_EVERY = 60.0  # seconds between two warnings while rounds keep failing

# Guards starting the thread. A lock held by another thread at fork time stays held in the child, so
# the child gets a new one.
_START_LOCK = threading.Lock()


def _reinit_start_lock() -> None:
    global _START_LOCK
    _START_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reinit_start_lock)


class BackgroundCheckpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on `connect()`'s connection (the calling thread's) every
    `interval` seconds, in a thread started by `ensure_running()`."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval}")
        self._connect = connect
        self._name = name
        self._interval = interval
        self._pid = 0  # the process the thread runs in; 0: none started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # successful rounds in this process
        self.failures = 0  # failed rounds in this process
        self._last_warning = -_LOG_EVERY

    def ensure_running(self) -> None:
        """Start the thread in this process unless it runs already. Cheap: called before every write."""
        if self._pid == os.getpid():
            return
        with _START_LOCK:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self.rounds = self.failures = 0
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="pulltag-sqlite-checkpoint", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's thread (waiting for a round in progress, at most `timeout`)."""
        with _START_LOCK:
            if self._pid != os.getpid() or self._thread is None:
                return
            self._stop.set()
            thread, self._thread, self._pid = self._thread, None, 0
        thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            self.checkpoint_once()

    def checkpoint_once(self) -> bool:
        """One PASSIVE checkpoint; False (and a warning, rate-limited) if it failed."""
        try:
            self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # the thread must outlive any failure, or the WAL grows for good
            self.failures += 1
            now = time.monotonic()
            if now - self._last_warning >= _LOG_EVERY:
                self._last_warning = now
                log.warning(
                    "SQLite store %s: background checkpoint failed (%d so far), trying again every %gs: %s",
                    self._name,
                    self.failures,
                    self._interval,
                    f"{type(exc).__name__}: {exc}",
                )
            return False
        self.rounds += 1
        return True
