"""The tagging stage (flow step 6): plan → tag in the registry, ledger entry, event on the pod.

Exactly-once is not promised by any one piece but by the combination: a pull's seen key is marked only
once it is fully handled (a crash re-handles, never loses), equal dedup keys coalesce in the queue, a
store claim lets one worker of one replica work on a key, a done marker and the ledger remember finished
keys, and tag names are deterministic, so even two overlapping workers render the same tag.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from listener.kube import ClusterAPI, KubeError
from listener.ledger import tagged_per_ledger
from listener.metrics import ListenerMetrics
from listener.plan import TagPlan, fallback_tag
from listener.podevents import pod_event
from listener.registry.errors import TagConflict
from listener.seen import SeenMarks
from listener.workqueue import TokenBucket, WorkerPool, WorkQueue, backoff_delay
from pulltag.config import RegistrySettings, Settings
from pulltag.logs import describe
from pulltag.store import LedgerEntry, Outcome, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

QUEUE_SIZE = 10_000
# How long a finished key is remembered without the ledger.
DONE_TTL_SECONDS = 24 * 3600.0


# ---------------------------------------------------------------------------------------------------
# Tagging


class RegistryLike(Protocol):
    def tags_on(self, repository: str, digest: str, prefix: str = "") -> list[str]: ...

    def create_tag(
        self, repository: str, digest: str, tag: str, *, listed_since: float | None = None
    ) -> Any: ...


# (registry settings, timing observer) -> client. The observer is the one path registry timings take.
ClientFactory = Callable[[RegistrySettings, Callable[[str, str, float], None]], RegistryLike]


def default_client_factory(
    settings: RegistrySettings, observer: Callable[[str, str, float], None]
) -> RegistryLike:
    from listener.registry import registry_client

    client: RegistryLike = registry_client(settings, observer=observer)
    return client


@dataclass(frozen=True)
class TagJob:
    plan: TagPlan
    pod_uid: str
    field_path: str
    seen_keys: frozenset[str] = frozenset()
    attempt: int = 0
    store_failures: int = 0  # the store could not be asked (before any registry call): not an attempt
    origin: str = ""  # "backfill": a never-admitted pod's running container; leads the ledger reason

    @staticmethod
    def merge(old: TagJob, new: TagJob) -> TagJob:
        """One job for equal keys. A job with event keys carries a kubelet event's pull; one without
        comes from the catch-up pass, whose time may be a container's start: the event's plan wins."""
        return replace(
            old,
            plan=new.plan if new.seen_keys and not old.seen_keys else old.plan,
            origin=new.origin if new.seen_keys and not old.seen_keys else old.origin,
            seen_keys=old.seen_keys | new.seen_keys,
            attempt=max(old.attempt, new.attempt),
            store_failures=max(old.store_failures, new.store_failures),
        )


class _Transient(Exception):
    pass


class _NameBusy(Exception):
    """Another worker, here or in another replica, holds this tag name's claim (looking, then writing)."""


class Tagger:
    """Tag plans in a worker pool: claim, look for an existing tag, create, record, tell the pod."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: ClusterAPI,
        metrics: ListenerMetrics,
        seen: SeenMarks,
        *,
        client_factory: ClientFactory = default_client_factory,
        instance: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.kube = kube
        self.metrics = metrics
        self.seen = seen
        self.dry_run = settings.listener.dry_run
        self.conf = settings.listener  # the `listener:` section
        self.instance = instance
        self.queue: WorkQueue[TagJob] = WorkQueue(TagJob.merge, QUEUE_SIZE)
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
            if not self.store.claim(_claim_key(key), self.conf.claim_ttl_seconds):
                # Not marked seen: the claimant may have died mid-tag (SIGKILL), and then nobody would
                # ever tag the key. Look again until its done marker appears or its claim expires.
                delay = self.conf.claim_recheck_seconds
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
            # Not an attempt: the other look-and-write ends in a moment, and then this one sees its tag (a
            # conflict that moves this digest to its suffixed name, or the tag already there). Nothing was
            # asked of the registry yet: the name is claimed before the listing.
            self._release(key)
            delay = self.conf.claim_recheck_seconds
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
            outcome, reason = "failed", describe(exc)
        self._finish(key, job, outcome, reason)

    def _tag(self, plan_: TagPlan) -> tuple[Outcome, str, TagPlan]:
        """The outcome, its reason, and the plan with the tag name actually used."""
        if plan_.skip_prefix is not None:
            # The store failing here only costs a registry request (found by the chaos suite: Redis dying
            # between the claim and this query once made the tag `failed` without any registry call).
            existing = tagged_per_ledger(self.store, plan_, dry_run=self.dry_run)
            if existing:
                return "skipped", f"already tagged {existing} (ledger)", plan_
        if self.dry_run:
            return self._tagged_in_registry(plan_) or (
                "dry-run",
                f"would tag {plan_.image_name}@{plan_.digest} as {plan_.tag}",
                plan_,
            )
        # The name is claimed BEFORE the registry's listing (`tags_on`), so the listing shows every write of
        # the name by pulltag's other workers and replicas (each holds the claim until its PUT returned) and
        # none can follow; `create_tag` then needs no HEAD of a name the listing did not show
        # (`listed_since`; OciClient._name_absent has the whole argument). The claim costs its two store
        # operations also when the listing then finds the digest tagged; a pull the ledger already answered
        # (above) takes no claim.
        name_key = _name_key(plan_)
        since = self._claim_name(name_key, plan_.tag)
        try:
            if found := self._tagged_in_registry(plan_):
                return found
            # A claim near its expiry may be someone else's by the time of the PUT: then look the name up.
            held = time.monotonic() - since < self.conf.claim_ttl_seconds / 2
            result = self._call(
                plan_,
                lambda c: c.create_tag(
                    plan_.repository, plan_.digest, plan_.tag, listed_since=since if held else None
                ),
            )
        except TagConflict as exc:
            conflict = exc
        else:
            return _created_or_exists(result, "", plan_)
        finally:
            self._release_name(name_key, plan_.tag)
        # Another digest of this repository already has the name (pulled in the same second). Never move
        # it: use the digest-suffixed name, looked up again (HEAD) under its own claim. A conflict on that
        # one too is a real conflict.
        note = f"{plan_.tag} is on {conflict.existing}; "
        plan_ = replace(plan_, tag=fallback_tag(plan_.tag, plan_.digest))
        log.info("%s@%s: %susing %s", plan_.image_name, plan_.digest, note, plan_.tag)
        return _created_or_exists(self._create(plan_), note, plan_)

    def _tagged_in_registry(self, plan_: TagPlan) -> tuple[Outcome, str, TagPlan] | None:
        """("skipped", ...) when a tag with the plan's prefix is already on the digest in the registry."""
        if plan_.skip_prefix is None:
            return None
        tags = self._call(plan_, lambda c: c.tags_on(plan_.repository, plan_.digest, plan_.skip_prefix or ""))
        return ("skipped", f"already tagged {sorted(tags)[0]}", plan_) if tags else None

    def _create(self, plan_: TagPlan) -> Any:
        # Two digests of one repository pulled in the same second render the same name under different
        # keys, so both can be in flight at once. An OCI registry has no conditional PUT: both would find
        # the name free (HEAD 404), and the second PUT would move the tag off the first digest (found by
        # the chaos suite). The name's claim makes "look, then write" one step across workers and
        # replicas; whoever comes second then finds the tag and takes the suffixed name.
        name_key = _name_key(plan_)
        self._claim_name(name_key, plan_.tag)
        try:
            return self._call(plan_, lambda c: c.create_tag(plan_.repository, plan_.digest, plan_.tag))
        finally:
            self._release_name(name_key, plan_.tag)

    def _claim_name(self, name_key: str, tag: str) -> float:
        """Claim a tag name (`_NameBusy` when another worker holds it); the `time.monotonic()` from which
        it is held."""
        if not self.store.claim(name_key, self.conf.claim_ttl_seconds):
            raise _NameBusy(tag)
        return time.monotonic()

    def _release_name(self, name_key: str, tag: str) -> None:
        try:
            self.store.release(name_key)
        except StoreError as exc:
            log.warning("could not release the claim on tag name %s (it expires): %s", tag, exc)

    def _call(self, plan_: TagPlan, call: Callable[[RegistryLike], T]) -> T:
        """One registry call under the registry's rate limit; its timing reaches the metrics through the
        client's observer (`_observe`), the one path registry timings take."""
        client = self._client(plan_.registry)
        if not self._bucket(plan_.registry).acquire(self._stop):
            raise _Transient("stopping")
        try:
            return call(client)
        except Exception as exc:
            if getattr(exc, "transient", False):
                raise _Transient(describe(exc)) from exc
            raise

    def _client(self, host: str) -> RegistryLike:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                settings = self.settings.registry_for(host)
                if settings is None:
                    raise LookupError(f"registry {host} is not configured")
                client = self._clients[host] = self._client_factory(settings, self._observe)
            return client

    def _observe(self, registry: str, operation: str, seconds: float) -> None:
        self.metrics.registry_seconds.labels(registry, operation).observe(seconds)

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
            delay = backoff_delay(
                job.attempt, self.conf.tag_retry_initial_seconds, self.conf.tag_retry_max_seconds
            )
            log.warning("%s: transient failure (%s); attempt %d in %.1fs", key, reason, attempt + 1, delay)
            self.queue.add_after(key, replace(job, attempt=attempt), delay)
            return
        self._finish(key, job, "failed", f"{reason} (after {attempt} attempts)", claimed=False)
        if self.on_gave_up is not None and not self._stop.is_set():
            self.on_gave_up()

    def _finish(self, key: str, job: TagJob, outcome: Outcome, reason: str, *, claimed: bool = True) -> None:
        plan_ = job.plan
        self._record(plan_, outcome, ": ".join(filter(None, (job.origin, reason))))
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
            tagged_at=self.clock(),
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
            self.store.mark_seen(_done_key(key), DONE_TTL_SECONDS)
        except StoreError as exc:
            log.warning("could not mark %s done: %s", key, exc)

    def _wait_for_store(self, key: str, job: TagJob, exc: StoreError) -> None:
        # The store is down (Redis restarting): nothing was tried on the registry, so this is no attempt.
        # Counting it would record the tag as failed (and the pull as handled) after a few seconds of
        # store outage; wait for the store instead, with backoff.
        delay = backoff_delay(
            job.store_failures, self.conf.tag_retry_initial_seconds, self.conf.tag_retry_max_seconds
        )
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


def _created_or_exists(result: Any, note: str, plan_: TagPlan) -> tuple[Outcome, str, TagPlan]:
    if getattr(result, "created", False):
        return "created", note.rstrip("; "), plan_
    return "exists", note + "tag already on the digest", plan_


def _claim_key(key: str) -> str:
    return f"tag:{key}"


def _done_key(key: str) -> str:
    return f"tagged:{key}"


def _name_key(plan_: TagPlan) -> str:
    return f"tag-name:{plan_.registry}/{plan_.repository}:{plan_.tag}"
