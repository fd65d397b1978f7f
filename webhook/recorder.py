"""Writes admission records under a time budget, so a slow or dead store never delays a pod.

Writes run in a small thread pool. The caller waits at most the budget; a write that overruns keeps
running in the background (it may still land, which is harmless: records are keyed by pod uid). The
number of writes in the pool (queued + running) is capped: when the store hangs, the pool would otherwise
queue one write per admission for as long as the hang lasts, so past the cap writes are skipped at once.
"""

from __future__ import annotations

import enum
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from pulltag.store.base import AdmissionRecord, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)


class WriteResult(enum.Enum):
    OK = "ok"
    TIMEOUT = "timeout"  # still running after the budget
    UNAVAILABLE = "unavailable"  # StoreUnavailable
    ERROR = "error"  # StoreError or anything unexpected from the backend
    BUSY = "busy"  # the pool is full of earlier writes: skipped without trying


class Recorder:
    def __init__(self, store: Store, budget_seconds: float, threads: int = 4, max_pending: int = 32) -> None:
        self._store = store
        self._budget = budget_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pulltag-store")
        self._slots = threading.BoundedSemaphore(max_pending)

    def put_admission(self, record: AdmissionRecord) -> tuple[WriteResult, str]:
        """Write `record`, waiting at most the budget; returns the result and a reason for logs."""
        if not self._slots.acquire(blocking=False):
            return WriteResult.BUSY, "too many store writes pending"
        try:
            future = self._pool.submit(self._store.put_admission, record)
        except RuntimeError as exc:  # the pool is shut down (process stopping)
            self._slots.release()
            return WriteResult.ERROR, str(exc)
        future.add_done_callback(self._release)
        try:
            future.result(timeout=self._budget)
        except FutureTimeout:
            return WriteResult.TIMEOUT, f"no answer within {self._budget:g}s"
        except StoreUnavailable as exc:
            return WriteResult.UNAVAILABLE, str(exc)
        except StoreError as exc:
            return WriteResult.ERROR, str(exc)
        except Exception as exc:  # a backend bug must still not block a pod
            return WriteResult.ERROR, f"{type(exc).__name__}: {exc}"
        return WriteResult.OK, ""

    def _release(self, _future: Future[None]) -> None:
        self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
