"""Writes admission records under a time budget, so a slow or dead store never delays a pod.

One writer thread per process does the writes, in batches: whatever records arrived while the previous
write was running go to the store together (`Store.put_admissions`: one SQLite transaction, one Redis
round trip). Under load this is group commit: the store's write lock is taken once per batch instead of
once per pod, and request threads of one process never fight each other for SQLite's file lock (whose
busy handler sleeps whole milliseconds).

Across processes (gunicorn's workers), the writers of one SQLite file take turns on a file lock
(`FileWriteLock`) around each batch. Without it they meet on SQLite's own write lock, whose busy handler
polls with sleeps of 1, 2, 5, 10 ms...: two workers writing at once made about one write in ten take a
millisecond or more. A blocked `flock` instead wakes the next writer as soon as the lock is released,
and the kernel releases it if its holder dies. Only the webhook's writers take it; the listener keeps
SQLite's locking. While one worker's write hangs holding it, the other workers' writers wait on it too
(no store timeout applies to the lock): their queues fill to the cap and later records are skipped at
once, exactly as when the store itself hangs; no pod waits longer than the budget.

The caller waits at most the budget; a write that overruns still lands later, which is harmless: records
are keyed by pod uid. The number of records waiting or being written is capped: while the store hangs,
the queue would otherwise grow by one record per admission for as long as the hang lasts, so past the cap
writes are skipped at once.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from typing import Protocol

from pulltag.store.base import AdmissionRecord, Store, StoreError, StoreUnavailable
from pulltag.store.sqlite import sqlite_path

log = logging.getLogger(__name__)


class WriteResult(enum.Enum):
    OK = "ok"
    TIMEOUT = "timeout"  # still waiting or running after the budget
    UNAVAILABLE = "unavailable"  # StoreUnavailable
    ERROR = "error"  # StoreError or anything unexpected from the backend
    BUSY = "busy"  # too many earlier writes pending: skipped without trying


class WriteLock(Protocol):
    def held(self) -> contextlib.AbstractContextManager[None]: ...


class FileWriteLock:
    """An exclusive `flock` on `path`, shared by every process that opens the same file.

    Blocking without a timeout is deliberate: only the writer thread takes it, and request threads wait
    for the writer at most the budget whatever holds it up. The file is opened on first use, in the
    writer thread, i.e. after gunicorn's fork."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def write_lock_for(store_url: str) -> WriteLock | None:
    """The lock the webhook's writers of this store share: a file beside an SQLite database; none for
    a server store (Redis queues commands itself)."""
    if not store_url.startswith("sqlite:"):
        return None
    return FileWriteLock(sqlite_path(store_url) + ".webhook-lock")


class _Pending:
    """One record waiting for its batch; `done` is released once the batch's result is known.

    `done` is a bare lock taken at creation: the writer releases it, the request thread's acquire (with
    the budget as timeout) returns. A `threading.Event` would cost a Condition and a second lock per
    record, and a notify_all, on the path every admission takes."""

    __slots__ = ("done", "reason", "record", "result")

    def __init__(self, record: AdmissionRecord) -> None:
        self.record = record
        self.done = threading.Lock()
        self.done.acquire()
        self.result = WriteResult.OK
        self.reason = ""


class Recorder:
    def __init__(
        self,
        store: Store,
        budget_seconds: float,
        max_pending: int = 32,
        max_batch: int = 64,
        write_lock: WriteLock | None = None,
    ) -> None:
        self._store = store
        self._write_lock = write_lock
        self._budget = budget_seconds
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._in_flight = 0  # records taken by the writer and not finished yet
        self._cond = threading.Condition()
        self._closed = False
        self._writer: threading.Thread | None = None

    def pending(self) -> int:
        """Records queued or being written."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def put_admission(self, record: AdmissionRecord) -> tuple[WriteResult, str]:
        """Write `record`, waiting at most the budget; returns the result and a reason for logs."""
        item = _Pending(record)
        with self._cond:
            if self._closed:
                return WriteResult.ERROR, "the recorder is closed (process stopping)"
            if len(self._queue) + self._in_flight >= self._max_pending:
                return WriteResult.BUSY, "too many store writes pending"
            self._queue.append(item)
            self._ensure_writer()
            self._cond.notify()
        if not item.done.acquire(timeout=self._budget):
            return WriteResult.TIMEOUT, f"no answer within {self._budget:g}s"
        return item.result, item.reason

    def _ensure_writer(self) -> None:
        # Started lazily: the app may be created before gunicorn forks, and threads do not survive a fork.
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._run, name="pulltag-store-writer", daemon=True)
            self._writer.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                self._in_flight = len(batch)
            results = self._write_batch([p.record for p in batch])
            with self._cond:
                self._in_flight = 0
            for item, (result, reason) in zip(batch, results, strict=True):
                item.result, item.reason = result, reason
                item.done.release()

    def _write_batch(self, records: list[AdmissionRecord]) -> list[tuple[WriteResult, str]]:
        result = self._write(records)
        if result[0] is WriteResult.ERROR and len(records) > 1:
            # Refused, not unreachable: maybe one record's fault. Write them one by one, so one bad
            # record costs only its own pod's record.
            return [self._write([record]) for record in records]
        return [result] * len(records)

    def _write(self, records: list[AdmissionRecord]) -> tuple[WriteResult, str]:
        try:
            with self._write_lock.held() if self._write_lock else contextlib.nullcontext():
                self._store.put_admissions(records)
        except StoreUnavailable as exc:
            return WriteResult.UNAVAILABLE, str(exc)
        except StoreError as exc:
            return WriteResult.ERROR, str(exc)
        except Exception as exc:  # a backend bug must still not block a pod
            return WriteResult.ERROR, f"{type(exc).__name__}: {exc}"
        return WriteResult.OK, ""

    def close(self) -> None:
        """Stop taking writes; records already queued are still written by the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
