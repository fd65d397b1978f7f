"""The confirmation stage (flow steps 3-5): a pull, the pod read from the API and the admission record →
a confirmed tag plan for the tagger, or the outcome that says why not."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from listener.confirm import Confirmed, Pending, Rejected, admission_from_annotation, confirm
from listener.kube import ClusterAPI, KubeError, Obj, pod_labels
from listener.metrics import ListenerMetrics
from listener.plan import Skip, plan
from listener.pulls import Pull, seen_key
from listener.seen import SeenMarks
from listener.tagger import Tagger, TagJob
from listener.workqueue import WorkerPool, WorkQueue, backoff_delay
from pulltag.config import Settings
from pulltag.contract import field_path
from pulltag.logs import loggable
from pulltag.store import AdmissionRecord, Store, StoreError

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000


def admission_record(store: Store, pod_uid: str, pod: Obj | None) -> AdmissionRecord | None:
    """The webhook's record of the pod: from the store, else from the pod's annotation (the store lost
    it, or cannot be asked right now)."""
    record = None
    if pod_uid:
        try:
            record = store.get_admission(pod_uid)
        except StoreError as exc:
            log.warning("admission lookup for %s failed (%s); using the pod's annotation", pod_uid, exc)
    if record is None and pod is not None:
        record = admission_from_annotation(pod)
    return record


@dataclass(frozen=True)
class ConfirmJob:
    pull: Pull
    first_seen: float  # monotonic
    attempt: int = 0

    @staticmethod
    def merge(old: ConfirmJob, new: ConfirmJob) -> ConfirmJob:
        return old if old.attempt >= new.attempt else new


@dataclass
class _Decision:
    outcome: str
    reason: str
    job: TagJob | None = None


class Confirmer:
    """Pull → confirmed plan, in a worker pool. A pull whose pod has no imageID yet is retried later
    through the queue's delayed adds (never by sleeping in a worker), until imageid_wait_seconds."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: ClusterAPI,
        metrics: ListenerMetrics,
        seen: SeenMarks,
        tagger: Tagger,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kube = kube
        self.metrics = metrics
        self.seen = seen
        self.tagger = tagger
        self.conf = settings.listener  # the `listener:` section
        self.queue: WorkQueue[ConfirmJob] = WorkQueue(ConfirmJob.merge, QUEUE_SIZE)
        self.pool = WorkerPool("confirm", self.queue, self.handle, settings.listener.workers)
        # Told (image, digest, namespace) of each confirmed pull, fresh or "already present": the digest
        # runs there now. The inventory hooks in here; it must not block.
        self.on_confirmed: Callable[[str, str, str], None] | None = None

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
            self._retry(key, job, f"api: {exc}", self.conf.api_patience_seconds, give_up=False)
            return
        if decision.outcome == "pending":
            self._retry(key, job, decision.reason, self.settings.listener.imageid_wait_seconds, give_up=True)
            return
        self._conclude(key, pull, decision)

    def _decide(self, pull: Pull) -> _Decision:
        pod = self.kube.get_pod(pull.namespace, pull.pod_name)
        record = admission_record(self.store, pull.pod_uid, pod)
        result = confirm(pull, record, pod)
        if isinstance(result, Pending):
            return _Decision("pending", result.reason)
        if isinstance(result, Rejected):
            return _Decision(result.outcome, result.reason)
        return self._plan(result, pod)

    def _plan(self, confirmed: Confirmed, pod: Obj | None) -> _Decision:
        pull = confirmed.pull
        if self.on_confirmed is not None:
            self.on_confirmed(
                f"{confirmed.registry}/{confirmed.repository}", confirmed.digest, pull.namespace
            )
        result = plan(
            confirmed,
            self.settings,
            pod_labels=pod_labels(pod),
            namespace_labels=self.kube.namespace_labels(pull.namespace),
        )
        if isinstance(result, Skip):
            return _Decision("filtered", f"{result.reason} {result.detail}".strip())
        job = TagJob(
            result, pull.pod_uid, field_path(pull.container_kind, pull.container), frozenset({seen_key(pull)})
        )
        return _Decision("confirmed", f"{result.image_name}@{result.digest} → {result.tag}", job)

    def _retry(self, key: str, job: ConfirmJob, reason: str, patience: float, *, give_up: bool) -> None:
        waited = time.monotonic() - job.first_seen
        if waited < patience:
            delay = backoff_delay(
                job.attempt,
                self.conf.confirm_retry_initial_seconds,
                self.conf.confirm_retry_max_seconds,
            )
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
