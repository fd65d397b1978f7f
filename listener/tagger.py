"""The work side of the listener: a coalescing work queue, worker pools, the confirmation stage (pull →
plan, with the pod read from the API) and the tagging stage (plan → tag in the registry).

Exactly-once is not promised by any one piece but by the combination: a pull's seen key is marked only
once it is fully handled (a crash re-handles, never loses), equal dedup keys coalesce in the queue, a
store claim lets one worker of one replica work on a key, a done marker and the ledger remember finished
keys, and tag names are deterministic, so even two overlapping workers render the same tag.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from listener.confirm import Confirmed, Pending, Rejected, admission_from_annotation, confirm
from listener.kube import KubeClient, KubeError, Obj, backoff_delay, pod_labels
from listener.metrics import ListenerMetrics
from listener.plan import Skip, TagPlan, fallback_tag, plan
from listener.pulls import Pull, seen_key
from listener.registry.errors import TagConflict
from pulltag.config import RegistrySettings, Settings
from pulltag.store import AdmissionRecord, LedgerEntry, Outcome, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPONENT = "pulltag-listener"


# ---------------------------------------------------------------------------------------------------
# Queue, rate limiter, pool


class WorkQueue(Generic[T]):
    """A work queue with client-go's semantics: a key is queued at most once (adding it again merges
    the values), a key being processed is never handed to a second worker (re-adds wait until `done`),
    delayed adds, and a bound on waiting keys (a full queue blocks `add`: backpressure, not loss)."""

    def __init__(self, merge: Callable[[T, T], T], maxsize: int = 0) -> None:
        self._merge = merge
        self._maxsize = maxsize
        self._ready: OrderedDict[str, T] = OrderedDict()
        self._processing: set[str] = set()
        self._dirty: dict[str, T] = {}
        self._delayed: list[tuple[float, int, str, T]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._shutdown = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed) + len(self._dirty)

    @property
    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    def idle(self) -> bool:
        """Nothing waiting, delayed or in progress."""
        with self._cond:
            return not (self._ready or self._delayed or self._dirty or self._processing)

    def add(self, key: str, value: T, *, block: bool = True) -> bool:
        """Queue `value` under `key` (merging with a queued one); False once shut down."""
        with self._cond:
            while True:
                if self._shutdown:
                    return False
                if self._merge_existing(key, value):
                    return True
                if not block or not self._maxsize or len(self._ready) < self._maxsize:
                    self._ready[key] = value
                    self._cond.notify_all()
                    return True
                self._cond.wait(0.5)

    def add_after(self, key: str, value: T, delay: float) -> None:
        """Queue after `delay` seconds; never blocks (retries must not deadlock a full queue)."""
        with self._cond:
            if self._shutdown:
                return
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key, value))
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> tuple[str, T] | None:
        """The next (key, value), marked in progress; None on shutdown or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                self._promote_due()
                if self._ready:
                    key, value = self._ready.popitem(last=False)
                    self._processing.add(key)
                    self._cond.notify_all()
                    return key, value
                wait = self._wait_time(deadline)
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready[key] = self._dirty.pop(key)
            self._cond.notify_all()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def _merge_existing(self, key: str, value: T) -> bool:
        if key in self._ready:
            self._ready[key] = self._merge(self._ready[key], value)
            return True
        if key in self._processing:
            old = self._dirty.get(key)
            self._dirty[key] = value if old is None else self._merge(old, value)
            return True
        return False

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key, value = heapq.heappop(self._delayed)
            if not self._merge_existing(key, value):
                self._ready[key] = value

    def _wait_time(self, deadline: float | None) -> float | None:
        now = time.monotonic()
        waits = []
        if self._delayed:
            waits.append(self._delayed[0][0] - now)
        if deadline is not None:
            waits.append(deadline - now)
        # Wake up at least every second: cheap, and robust against a missed notification.
        return min([*waits, 1.0]) if waits else 1.0


class TokenBucket:
    """`rate` tokens per second, up to `burst` saved; `acquire` waits for one (or gives up on stop)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a token if there is one (returns 0), else the seconds until there will be one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)


class WorkerPool(Generic[T]):
    """`size` threads taking items from a WorkQueue; a handler's exception is logged, never fatal."""

    def __init__(self, name: str, work: WorkQueue[T], handler: Callable[[str, T], None], size: int) -> None:
        self.name = name
        self.work = work
        self.handler = handler
        self.threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            key, value = item
            try:
                self.handler(key, value)
            except Exception:
                log.exception("%s: handling %s failed", self.name, key)
            finally:
                self.work.done(key)

    def join(self, deadline: float) -> bool:
        """Wait until `deadline` (monotonic) for in-flight items; True if all threads ended."""
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)


# ---------------------------------------------------------------------------------------------------
# Seen markers


class SeenMarks:
    """Which pull occurrences are fully handled: the store's seen markers, with a small local memory
    so a relist does not cost a store round trip per already-handled event."""

    def __init__(self, store: Store, ttl_seconds: float, local_max: int = 10_000) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._local: OrderedDict[str, None] = OrderedDict()
        self._local_max = local_max
        self._lock = threading.Lock()

    def is_seen(self, key: str) -> bool:
        with self._lock:
            if key in self._local:
                return True
        try:
            return self.store.is_seen(key)
        except StoreError as exc:
            # Unknown: handle it again; claims and done markers keep that from tagging twice.
            log.warning("seen check for %s failed: %s", key, exc)
            return False

    def mark(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.store.mark_seen(key, self.ttl)
            except StoreError as exc:
                log.warning("could not mark %s handled: %s", key, exc)
            with self._lock:
                self._local[key] = None
                while len(self._local) > self._local_max:
                    self._local.popitem(last=False)


# ---------------------------------------------------------------------------------------------------
# Tagging


class RegistryLike(Protocol):
    def tags_on(self, repository: str, digest: str, prefix: str = "") -> list[str]: ...

    def create_tag(self, repository: str, digest: str, tag: str) -> Any: ...


ClientFactory = Callable[[RegistrySettings], RegistryLike]


def default_client_factory(settings: RegistrySettings) -> RegistryLike:
    from listener.registry import registry_client

    client: RegistryLike = registry_client(settings)
    return client


@dataclass(frozen=True)
class TagJob:
    plan: TagPlan
    pod_uid: str
    field_path: str
    seen_keys: frozenset[str] = frozenset()
    attempt: int = 0
    store_failures: int = 0  # the store could not be asked (before any registry call): not an attempt

    @staticmethod
    def merge(old: TagJob, new: TagJob) -> TagJob:
        return replace(
            old,
            seen_keys=old.seen_keys | new.seen_keys,
            attempt=max(old.attempt, new.attempt),
            store_failures=max(old.store_failures, new.store_failures),
        )


@dataclass(frozen=True)
class TaggerOptions:
    # A crashed worker's claim frees itself after this. It covers one attempt (a few registry calls, each
    # bounded by the registry's timeouts); an overlap after it is still safe (names are deterministic and
    # the scope's prefix is looked for first), while a long TTL delays a dead worker's keys that long.
    claim_ttl_seconds: float = 60.0
    # A key claimed by someone else is looked at again after this (their done marker, or the claim free).
    claim_recheck_seconds: float = 2.0
    done_ttl_seconds: float = 24 * 3600.0  # how long a finished key is remembered without the ledger
    retry_initial: float = 1.0
    retry_cap: float = 60.0
    queue_size: int = 10_000


class _Transient(Exception):
    pass


class _NameBusy(Exception):
    """Another worker, here or in another replica, is writing this tag name right now."""


class Tagger:
    """Tag plans in a worker pool: claim, look for an existing tag, create, record, tell the pod."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: KubeClient,
        metrics: ListenerMetrics,
        seen: SeenMarks,
        *,
        dry_run: bool = False,
        client_factory: ClientFactory = default_client_factory,
        options: TaggerOptions | None = None,
        instance: str = "",
    ) -> None:
        self.settings = settings
        self.store = store
        self.kube = kube
        self.metrics = metrics
        self.seen = seen
        self.dry_run = dry_run
        self.options = options or TaggerOptions()
        self.instance = instance
        self.queue: WorkQueue[TagJob] = WorkQueue(TagJob.merge, self.options.queue_size)
        self.pool = WorkerPool("tagger", self.queue, self.handle, settings.listener.workers)
        self._client_factory = client_factory
        self._clients: dict[str, RegistryLike] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Called when a tag is given up after max_attempts transient failures (the catch-up pass hooks
        # in here to try it again later, so a long registry outage does not wait for the next pass).
        self.on_gave_up: Callable[[], None] | None = None

    def start(self) -> None:
        self.pool.start()

    def stop(self, deadline: float) -> bool:
        """Take no more work; let in-flight tags finish until `deadline` (monotonic)."""
        self.queue.shutdown()
        finished = self.pool.join(deadline)
        self._stop.set()
        return finished

    def submit(self, job: TagJob) -> bool:
        return self.queue.add(job.plan.dedup_key, job)

    # --- one job ------------------------------------------------------------------------------------

    def handle(self, key: str, job: TagJob) -> None:
        plan_ = job.plan
        try:
            if self.store.is_seen(_done_key(key)):
                log.debug("%s already tagged (done marker)", key)
                self.seen.mark(job.seen_keys)
                return
            if not self.store.claim(_claim_key(key), self.options.claim_ttl_seconds):
                # Not marked seen: the claimant may have died mid-tag (SIGKILL), and then nobody would
                # ever tag the key. Look again until its done marker appears or its claim expires.
                delay = self.options.claim_recheck_seconds
                log.info("%s is being tagged by another worker; looking again in %.0fs", key, delay)
                self.queue.add_after(key, job, delay)
                return
        except StoreError as exc:
            self._wait_for_store(key, job, exc)
            return
        try:
            outcome, reason, tagged = self._tag(plan_)
            job = replace(job, plan=tagged)
        except _NameBusy as exc:
            # Not an attempt: the other write ends in a moment, and then this one sees its tag (a conflict
            # that moves this digest to its suffixed name, or the tag already there).
            self._release(key)
            delay = self.options.claim_recheck_seconds
            log.info("%s: tag %s is being written by another worker; again in %.0fs", key, exc, delay)
            self.queue.add_after(key, job, delay)
            return
        except StoreError as exc:
            # Only the tag name's claim reaches the store in there, before any registry write.
            self._release(key)
            self._wait_for_store(key, job, exc)
            return
        except _Transient as exc:
            self._retry_or_fail(key, job, str(exc), claimed=True)
            return
        except Exception as exc:  # permanent registry errors, and anything unexpected
            outcome, reason = "failed", _describe(exc)
        self._finish(key, job, outcome, reason)

    def _tag(self, plan_: TagPlan) -> tuple[Outcome, str, TagPlan]:
        """The outcome, its reason, and the plan with the tag name actually used."""
        if plan_.skip_prefix is not None:
            existing = self._ledger_tag(plan_, plan_.skip_prefix)
            if existing:
                return "skipped", f"already tagged {existing} (ledger)", plan_
            tags = self._call(
                plan_, "tags_on", lambda c: c.tags_on(plan_.repository, plan_.digest, plan_.skip_prefix or "")
            )
            if tags:
                return "skipped", f"already tagged {sorted(tags)[0]}", plan_
        if self.dry_run:
            return "dry-run", f"would tag {plan_.image_name}@{plan_.digest} as {plan_.tag}", plan_
        note = ""
        try:
            result = self._create(plan_)
        except TagConflict as exc:
            # Another digest of this repository already has the name (pulled in the same second). Never
            # move it: use the digest-suffixed name. A conflict on that one too is a real conflict.
            note = f"{plan_.tag} is on {exc.existing}; "
            plan_ = replace(plan_, tag=fallback_tag(plan_.tag, plan_.digest))
            log.info("%s@%s: %susing %s", plan_.image_name, plan_.digest, note, plan_.tag)
            result = self._create(plan_)
        if getattr(result, "created", False):
            return "created", note.rstrip("; "), plan_
        return "exists", note + "tag already on the digest", plan_

    def _create(self, plan_: TagPlan) -> Any:
        # Two digests of one repository pulled in the same second render the same name under different
        # keys, so both can be in flight at once. An OCI registry has no conditional PUT: both would find
        # the name free (HEAD 404), and the second PUT would move the tag off the first digest (found by
        # the chaos suite). The name's claim makes "look, then write" one step across workers and
        # replicas; whoever comes second then finds the tag and takes the suffixed name.
        name_key = _name_key(plan_)
        if not self.store.claim(name_key, self.options.claim_ttl_seconds):
            raise _NameBusy(plan_.tag)
        try:
            return self._call(
                plan_, "create_tag", lambda c: c.create_tag(plan_.repository, plan_.digest, plan_.tag)
            )
        finally:
            try:
                self.store.release(name_key)
            except StoreError as exc:
                log.warning("could not release the claim on tag name %s (it expires): %s", plan_.tag, exc)

    def _ledger_tag(self, plan_: TagPlan, prefix: str) -> str | None:
        """A tag with `prefix` the ledger knows on the digest; None when none, or when the store cannot
        say: the ledger only saves a registry request, and the registry is asked next anyway."""
        wanted = {"created", "exists", "dry-run"} if self.dry_run else {"created", "exists"}
        try:
            entries = self.store.query_ledger(image=plan_.image_name, digest=plan_.digest, limit=100)
        except StoreError as exc:
            # Found by the chaos suite: Redis dying between the claim and this query made the tag
            # `failed` (and the pull handled) although nothing had been tried on the registry.
            log.warning("ledger lookup for %s failed (%s); asking the registry", plan_.dedup_key, exc)
            return None
        for entry in entries:
            if entry.outcome in wanted and entry.tag.startswith(prefix):
                return entry.tag
        return None

    def _call(self, plan_: TagPlan, operation: str, call: Callable[[RegistryLike], T]) -> T:
        client = self._client(plan_.registry)
        if not self._bucket(plan_.registry).acquire(self._stop):
            raise _Transient("stopping")
        started = time.monotonic()
        try:
            return call(client)
        except Exception as exc:
            if getattr(exc, "transient", False):
                raise _Transient(_describe(exc)) from exc
            raise
        finally:
            elapsed = time.monotonic() - started
            self.metrics.registry_seconds.labels(plan_.registry, operation).observe(elapsed)

    def _client(self, host: str) -> RegistryLike:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                settings = self.settings.registry_for(host)
                if settings is None:
                    raise LookupError(f"registry {host} is not configured")
                client = self._clients[host] = self._client_factory(settings)
            return client

    def _bucket(self, host: str) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(host)
            if bucket is None:
                bucket = self._buckets[host] = TokenBucket(self.settings.listener.rate_limit_per_second)
            return bucket

    # --- outcomes -------------------------------------------------------------------------------------

    def _retry_or_fail(self, key: str, job: TagJob, reason: str, *, claimed: bool) -> None:
        if claimed:
            self._release(key)
        attempt = job.attempt + 1
        if attempt < self.settings.listener.max_attempts and not self._stop.is_set():
            delay = backoff_delay(job.attempt, self.options.retry_initial, self.options.retry_cap)
            log.warning("%s: transient failure (%s); attempt %d in %.1fs", key, reason, attempt + 1, delay)
            self.queue.add_after(key, replace(job, attempt=attempt), delay)
            return
        self._finish(key, job, "failed", f"{reason} (after {attempt} attempts)", claimed=False)
        if self.on_gave_up is not None and not self._stop.is_set():
            self.on_gave_up()

    def _finish(self, key: str, job: TagJob, outcome: Outcome, reason: str, *, claimed: bool = True) -> None:
        plan_ = job.plan
        self._record(plan_, outcome, reason)
        if outcome in ("created", "exists", "skipped", "dry-run"):
            self._remember_done(key)
        elif claimed:
            self._release(key)
        self._post_event(job, outcome, reason)
        self.metrics.tags.labels(plan_.registry, outcome).inc()
        level = logging.WARNING if outcome == "failed" else logging.INFO
        log.log(
            level,
            "%s %s@%s as %s: %s%s",
            outcome,
            plan_.image_name,
            plan_.digest,
            plan_.tag,
            f"{plan_.namespace}/{plan_.pod}",
            f" ({reason})" if reason else "",
        )
        self.seen.mark(job.seen_keys)

    def _record(self, plan_: TagPlan, outcome: Outcome, reason: str) -> None:
        entry = LedgerEntry(
            image=plan_.image_name,
            digest=plan_.digest,
            tag=plan_.tag,
            namespace=plan_.namespace,
            pod=plan_.pod,
            node=plan_.node,
            pulled_at=plan_.pulled_at,
            tagged_at=time.time(),
            outcome=outcome,
            reason=reason,
            container=plan_.container,
        )
        try:
            self.store.append_ledger(entry)
        except StoreError as exc:
            log.warning("could not write the ledger for %s: %s", plan_.dedup_key, exc)

    def _remember_done(self, key: str) -> None:
        # The claim is kept (it expires on its own); the done marker outlives it.
        try:
            self.store.mark_seen(_done_key(key), self.options.done_ttl_seconds)
        except StoreError as exc:
            log.warning("could not mark %s done: %s", key, exc)

    def _wait_for_store(self, key: str, job: TagJob, exc: StoreError) -> None:
        # The store is down (Redis restarting): nothing was tried on the registry, so this is no attempt.
        # Counting it would record the tag as failed (and the pull as handled) after a few seconds of
        # store outage; wait for the store instead, with backoff.
        delay = backoff_delay(job.store_failures, self.options.retry_initial, self.options.retry_cap)
        log.warning("%s: store unavailable (%s); again in %.1fs", key, exc, delay)
        self.queue.add_after(key, replace(job, store_failures=job.store_failures + 1), delay)

    def _release(self, key: str) -> None:
        try:
            self.store.release(_claim_key(key))
        except StoreError as exc:
            log.warning("could not release the claim on %s: %s", key, exc)

    def _post_event(self, job: TagJob, outcome: Outcome, reason: str) -> None:
        if self.dry_run or outcome not in ("created", "exists", "failed"):
            return
        plan_ = job.plan
        if outcome == "failed":
            kind, event_reason = "Warning", "ImageTagFailed"
            message = f"Could not tag {plan_.image_name}@{plan_.digest} as {plan_.tag}: {reason}"
        else:
            kind, event_reason = "Normal", "ImageTagged"
            message = f"Tagged {plan_.image_name}@{plan_.digest} as {plan_.tag}"
        event = pod_event(plan_, job.pod_uid, job.field_path, kind, event_reason, message, self.instance)
        try:
            self.kube.create_event(plan_.namespace, event)
        except KubeError as exc:
            log.warning("could not post %s on %s/%s: %s", event_reason, plan_.namespace, plan_.pod, exc)


def pod_event(
    plan_: TagPlan, pod_uid: str, field_path: str, kind: str, reason: str, message: str, instance: str
) -> Obj:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: Obj = {"apiVersion": "v1", "kind": "Pod", "namespace": plan_.namespace, "name": plan_.pod}
    if pod_uid:
        involved["uid"] = pod_uid
    if field_path:
        involved["fieldPath"] = field_path
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # The kubelet's naming: object name, a dot, a unique hex suffix.
        "metadata": {"name": f"{plan_.pod}.{time.time_ns():x}", "namespace": plan_.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": kind,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
    }


def _claim_key(key: str) -> str:
    return f"tag:{key}"


def _done_key(key: str) -> str:
    return f"tagged:{key}"


def _name_key(plan_: TagPlan) -> str:
    return f"tag-name:{plan_.registry}/{plan_.repository}:{plan_.tag}"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def loggable(text: str) -> str:
    """`text` with every non-printable character (CR, LF, other controls, separators) escaped as in
    `repr`, so untrusted text stays on one log line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def field_path_of(pull: Pull) -> str:
    return f"spec.{pull.container_kind}{{{pull.container}}}"


# ---------------------------------------------------------------------------------------------------
# Confirmation


@dataclass(frozen=True)
class ConfirmJob:
    pull: Pull
    first_seen: float  # monotonic
    attempt: int = 0

    @staticmethod
    def merge(old: ConfirmJob, new: ConfirmJob) -> ConfirmJob:
        return old if old.attempt >= new.attempt else new


@dataclass(frozen=True)
class ConfirmOptions:
    retry_initial: float = 0.5
    retry_cap: float = 5.0
    # How long to keep trying when the API server (not the kubelet) is the problem.
    api_patience_seconds: float = 300.0
    queue_size: int = 10_000


@dataclass
class _Decision:
    outcome: str
    reason: str
    job: TagJob | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Confirmer:
    """Pull → confirmed plan, in a worker pool. A pull whose pod has no imageID yet is retried later
    through the queue's delayed adds (never by sleeping in a worker), until imageid_wait_seconds."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: KubeClient,
        metrics: ListenerMetrics,
        seen: SeenMarks,
        tagger: Tagger,
        options: ConfirmOptions | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kube = kube
        self.metrics = metrics
        self.seen = seen
        self.tagger = tagger
        self.options = options or ConfirmOptions()
        self.queue: WorkQueue[ConfirmJob] = WorkQueue(ConfirmJob.merge, self.options.queue_size)
        self.pool = WorkerPool("confirm", self.queue, self.handle, settings.listener.workers)

    def start(self) -> None:
        self.pool.start()

    def stop(self, deadline: float) -> None:
        self.queue.shutdown()
        self.pool.join(deadline)

    def submit(self, pull: Pull) -> bool:
        return self.queue.add(seen_key(pull), ConfirmJob(pull, time.monotonic()))

    def handle(self, key: str, job: ConfirmJob) -> None:
        pull = job.pull
        try:
            decision = self._decide(pull)
        except (KubeError, StoreError) as exc:
            self._retry(key, job, f"api: {exc}", self.options.api_patience_seconds, give_up=False)
            return
        if decision.outcome == "pending":
            self._retry(key, job, decision.reason, self.settings.listener.imageid_wait_seconds, give_up=True)
            return
        self._conclude(key, pull, decision)

    def _decide(self, pull: Pull) -> _Decision:
        pod = self.kube.get_pod(pull.namespace, pull.pod_name)
        record = self._record(pull, pod)
        result = confirm(pull, record, pod)
        if isinstance(result, Pending):
            return _Decision("pending", result.reason)
        if isinstance(result, Rejected):
            return _Decision(result.outcome, result.reason)
        return self._plan(result, pod)

    def _record(self, pull: Pull, pod: Obj | None) -> AdmissionRecord | None:
        try:
            record = self.store.get_admission(pull.pod_uid)
        except StoreError as exc:
            log.warning("admission lookup for %s failed (%s); using the pod's annotation", pull.pod_uid, exc)
            record = None
        if record is None and pod is not None:
            record = admission_from_annotation(pod)
        return record

    def _plan(self, confirmed: Confirmed, pod: Obj | None) -> _Decision:
        pull = confirmed.pull
        result = plan(
            confirmed,
            self.settings,
            pod_labels=pod_labels(pod),
            namespace_labels=self.kube.namespace_labels(pull.namespace),
        )
        if isinstance(result, Skip):
            return _Decision("filtered", f"{result.reason} {result.detail}".strip())
        job = TagJob(result, pull.pod_uid, field_path_of(pull), frozenset({seen_key(pull)}))
        return _Decision("confirmed", f"{result.image_name}@{result.digest} → {result.tag}", job)

    def _retry(self, key: str, job: ConfirmJob, reason: str, patience: float, *, give_up: bool) -> None:
        waited = time.monotonic() - job.first_seen
        if waited < patience:
            delay = backoff_delay(job.attempt, self.options.retry_initial, self.options.retry_cap)
            delay = min(delay, max(0.05, patience - waited))
            log.debug("%s pending (%s); again in %.2fs", key, reason, delay)
            self.queue.add_after(key, replace(job, attempt=job.attempt + 1), delay)
            return
        if not give_up:
            # The API server, not the pull, failed us: leave the key unmarked so a relist or the
            # catch-up pass handles it later.
            log.warning("%s: giving up for now after %.0fs (%s)", key, waited, reason)
            return
        self._conclude(key, job.pull, _Decision("no_digest", f"{reason} after {waited:.0f}s"))

    def _conclude(self, key: str, pull: Pull, decision: _Decision) -> None:
        self.metrics.pulls.labels(decision.outcome).inc()
        # Everything here but the outcome comes from an Event anyone allowed to create events may post:
        # escaped, so a CR/LF in an image name cannot start a forged log line.
        log.info(
            "pull %s/%s %s %s: %s (%s)",
            loggable(pull.namespace),
            loggable(pull.pod_name),
            loggable(pull.container),
            loggable(pull.image),
            decision.outcome,
            loggable(decision.reason),
        )
        if decision.job is not None:
            # Marked seen by the tagger once the tag is done, not now: a crash re-handles the pull.
            if not self.tagger.submit(decision.job):
                log.info("%s not queued: stopping", key)
            return
        self.seen.mark([key])


def count_queues(*queues: WorkQueue[Any] | Mapping[str, Any]) -> int:
    return sum(len(q) for q in queues)
