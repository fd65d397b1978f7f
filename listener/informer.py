"""A list-then-watch informer over raw JSON, in the manner of client-go's reflector.

Why not `kubernetes.informer.SharedInformer`: it runs handlers on the watch thread, reconnects without
backoff, and `Watch.stream(deserialize=False)` neither tracks resourceVersion nor handles ERROR events.

Semantics:
- LIST (paged) gives the current objects and a resourceVersion; WATCH from there. Each listed object is
  delivered like an ADDED event; repeated deliveries after a relist are the consumer's to deduplicate.
- BOOKMARKs (asked for with allowWatchBookmarks) only move the resourceVersion forward.
- 410 Gone, as an HTTP status or as an ERROR event, means our resourceVersion is too old: relist.
- Any other failure: exponential backoff with jitter, honouring Retry-After; reset after a healthy
  stream. A server-side `timeoutSeconds` (random per stream, so replicas do not reconnect in step)
  ends streams normally; a socket read timeout detects a silent, half-open stream.
- The watch thread only decodes and transforms (pure, cheap); results go to a bounded queue whose
  blocking `put` is the backpressure. Handlers run elsewhere.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import requests
import urllib3

from listener.kube import KubeClient, KubeError, Obj, WatchStream
from listener.metrics import ListenerMetrics
from listener.workqueue import Backoff
from pulltag.config import ListenerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# transform(event type, object) -> item for the queue, or None to drop. Runs on the watch thread.
Transform = Callable[[str, Obj], T | None]


# The watch's timings default to the `listener:` section's defaults: one source for those numbers.
_WATCH = ListenerSettings()


@dataclass(frozen=True)
class InformerOptions:
    path: str = "/api/v1/events"
    field_selector: str = "reason=Pulled"
    page_size: int = 500
    # Bookmarks arrive at least every minute on a real server: 90 s of silence means a dead stream.
    read_timeout: float = _WATCH.watch_read_timeout_seconds
    watch_timeout_min: int = 300
    watch_timeout_max: int = 600
    backoff_initial: float = _WATCH.watch_backoff_initial_seconds
    backoff_cap: float = _WATCH.watch_backoff_max_seconds
    # A stream that delivered nothing and lasted less than this counts as a failure (no hot loop
    # against a server that accepts watches and closes them at once).
    healthy_stream_seconds: float = _WATCH.watch_healthy_stream_seconds


_KNOWN_REASONS = frozenset({"Pulled", "Pulling", "Failed", "BackOff", "ErrImageNeverPull"})


class _Gone(Exception):
    """Our resourceVersion is too old: relist."""


class _StreamError(Exception):
    def __init__(self, message: str, cause: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.retry_after = retry_after


class Informer(Generic[T]):
    """Runs list+watch on its own thread and feeds `out` with `transform`ed objects."""

    def __init__(
        self,
        kube: KubeClient,
        out: queue.Queue[T],
        transform: Transform[T],
        metrics: ListenerMetrics,
        options: InformerOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.kube = kube
        self.out = out
        self.transform = transform
        self.metrics = metrics
        self.options = options or InformerOptions()
        self._rng = rng or random.Random()
        self.backoff = Backoff(self.options.backoff_initial, self.options.backoff_cap, rng=self._rng)
        self.resource_version: str | None = None
        self.synced = threading.Event()  # set after the first complete LIST
        self.lists = 0
        self.last_activity = time.monotonic()  # last healthy list/watch activity
        metrics.track_watch(lambda: self.last_activity)
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._restart_counters: dict[str, Any] = {}
        self._event_counters: dict[str, Any] = {}

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="informer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.abort()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def seconds_since_activity(self) -> float:
        return time.monotonic() - self.last_activity

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch_once()
            except _Gone:
                log.info("resourceVersion %s expired; relisting", self.resource_version)
                self._count_restart("gone")
                self.resource_version = None
            except _StreamError as exc:
                if self._stop.is_set():
                    break
                self._count_restart(exc.cause)
                delay = self.backoff.next_delay(at_least=exc.retry_after or 0.0)
                log.warning("watch %s: %s; retrying in %.1fs", exc.cause, exc, delay)
                self._stop.wait(delay)
            except Exception:  # a bug must not end the informer: log it and back off like any failure
                log.exception("informer failed unexpectedly")
                self._count_restart("error")
                self._stop.wait(self.backoff.next_delay())
        log.info("informer stopped")

    # --- list -----------------------------------------------------------------------------------------

    def _list(self) -> None:
        params: dict[str, str | int] = {"fieldSelector": self.options.field_selector}
        rv = ""
        count = 0
        try:
            for page in self.kube.list_pages(self.options.path, params, limit=self.options.page_size):
                rv = str((page.get("metadata") or {}).get("resourceVersion") or rv)
                for item in page.get("items") or []:
                    if isinstance(item, dict):
                        self._deliver("ADDED", item)
                        count += 1
                self.last_activity = time.monotonic()
        except KubeError as exc:
            # A 410 here is an expired continue token: start the list over, after a pause.
            raise _StreamError(f"list: {exc}", _cause_of(exc), exc.retry_after) from exc
        if not rv:
            raise _StreamError("list answered without a resourceVersion", "error")
        self.resource_version = rv
        self.lists += 1
        self.synced.set()
        log.info("listed %d objects at resourceVersion %s", count, rv)

    # --- watch ----------------------------------------------------------------------------------------

    def _watch_params(self) -> dict[str, str | int]:
        assert self.resource_version is not None
        return {
            "fieldSelector": self.options.field_selector,
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": self._rng.randint(
                self.options.watch_timeout_min, self.options.watch_timeout_max
            ),
        }

    def _open(self) -> WatchStream:
        try:
            stream = self.kube.watch(self.options.path, self._watch_params(), self.options.read_timeout)
        except KubeError as exc:
            if exc.gone:
                raise _Gone() from exc
            raise _StreamError(f"watch: {exc}", _cause_of(exc), exc.retry_after) from exc
        with self._stream_lock:
            if self._stop.is_set():
                stream.close()
                raise _StreamError("stopping", "stopped")
            self._stream = stream
        return stream

    def _watch_once(self) -> None:
        stream = self._open()
        started = time.monotonic()
        self.last_activity = started
        received = 0
        try:
            for line in stream.lines():
                if line:
                    self._handle_line(line)
                    received += 1
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            cause = "stalled" if _is_timeout(exc) else "connection"
            raise _StreamError(f"stream broke: {type(exc).__name__}", cause) from exc
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        if received == 0 and time.monotonic() - started < self.options.healthy_stream_seconds:
            raise _StreamError("stream closed at once without events", "closed")
        # A stream that ran normally until the server ended it: the connection is healthy again.
        self.backoff.reset()
        self._count_restart("closed")

    def _handle_line(self, line: bytes) -> None:
        """The watch thread's per-event work (bench/listener.py measures it against a bare json.loads)."""
        try:
            event = json.loads(line)
            kind = event["type"]
            obj = event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _StreamError(f"undecodable watch line ({type(exc).__name__})", "decode") from exc
        self.last_activity = time.monotonic()
        if kind == "ERROR":
            self._raise_error(obj)
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        rv = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = str(rv)
            return
        if kind in ("ADDED", "MODIFIED"):
            self._deliver(kind, obj)
        # DELETED: an event expired; nothing to do. The resourceVersion moves on either way, after
        # delivery, so a crash between the two re-delivers rather than skips.
        if rv:
            self.resource_version = str(rv)

    def _raise_error(self, obj: Any) -> None:
        code = obj.get("code") if isinstance(obj, dict) else None
        if code == 410:
            raise _Gone()
        message = obj.get("message") if isinstance(obj, dict) else None
        raise _StreamError(f"ERROR event {code}: {message}", "error")

    # --- delivery -------------------------------------------------------------------------------------

    def _deliver(self, kind: str, obj: Obj) -> None:
        self._event_counter(obj.get("reason")).inc()
        item = self.transform(kind, obj)
        if item is None:
            return
        # Blocking put is the backpressure; wake up now and then to notice a stop.
        while not self._stop.is_set():
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _StreamError("stopping", "stopped")

    def _event_counter(self, reason: object) -> Any:
        # Event reasons come from whoever posts events: anything unexpected is folded into "other", so the
        # counters (one per label, kept to spare the metric's label lookup) stay few.
        label = reason if isinstance(reason, str) and reason in _KNOWN_REASONS else "other"
        counter = self._event_counters.get(label)
        if counter is None:
            counter = self._event_counters[label] = self.metrics.events.labels(label)
        return counter

    def _count_restart(self, cause: str) -> None:
        if cause == "stopped" or self._stop.is_set():
            return
        counter = self._restart_counters.get(cause)
        if counter is None:
            counter = self._restart_counters[cause] = self.metrics.watch_restarts.labels(cause)
        counter.inc()


def _cause_of(exc: KubeError) -> str:
    if exc.status is None:
        return "unreachable"
    if exc.status == 429:
        return "throttled"
    return "http_error"


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | requests.Timeout | urllib3.exceptions.ReadTimeoutError):
            return True
        if current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__
    return False
