"""Catch-up: tag what runs but was never tagged (events missed while the listener was down longer than
the event TTL, or lost to a crash). At start and every reconcile_interval, list pods page by page; for
each running container of an admitted pod, take the pull the kubelet reported (its latest `Pulled` event
the listener saw) or, when it saw none, build the one it would have reported from the container's start,
confirm and plan it exactly like an event, and feed the same tagging queue. With `tagging.backfill`, the
running containers of pods never admitted are taken too, confirmed against their own spec (ledger
reason `backfill`, tag time the container's start).

The catch-up pass only takes what the event path cannot: its first pass waits until the informer's
initial list has been dispatched (`wait_ready`), so every container with an event in that list is known
by then, and its event's time (not the container's start) names the tag.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from listener.confirm import Confirmed, confirm
from listener.confirmer import admission_record
from listener.kube import ClusterAPI, KubeError, Obj, pod_labels
from listener.ledger import tagged_per_ledger
from listener.plan import TagPlan, plan
from listener.pulls import Pull, parse_timestamp
from listener.seen import LatestPulls
from listener.tagger import Tagger, TagJob
from pulltag.config import Settings
from pulltag.contract import CONTAINER_KINDS, field_path
from pulltag.store import AdmissionRecord, Store, StoreError

log = logging.getLogger(__name__)

_STATUS_KINDS = (
    ("containers", "containerStatuses"),
    ("initContainers", "initContainerStatuses"),
    ("ephemeralContainers", "ephemeralContainerStatuses"),
)

# Blocks until the event path has taken the informer's initial list (or `stop` is set: then False).
WaitReady = Callable[[threading.Event], bool]


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: ClusterAPI,
        tagger: Tagger,
        *,
        page_size: int = 500,
        latest: LatestPulls | None = None,
        wait_ready: WaitReady | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kube = kube
        self.tagger = tagger
        self.page_size = page_size
        self.latest = latest if latest is not None else LatestPulls()
        self.wait_ready = wait_ready
        self.passes = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._due: float | None = None  # monotonic time of an early pass that was asked for
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def request_pass(self, delay: float) -> None:
        """Ask for a pass within `delay` seconds (earlier requests and the regular schedule still hold)."""
        with self._lock:
            due = time.monotonic() + delay
            if self._due is None or due < self._due:
                self._due = due
                log.info("catch-up pass asked for in %.0fs", delay)
        self._wake.set()

    def _loop(self) -> None:
        interval = self.settings.listener.reconcile_interval_seconds
        if self.wait_ready is not None and not self.wait_ready(self._stop):
            return
        while not self._stop.is_set():
            try:
                self.run_once()
            except (KubeError, StoreError) as exc:
                # Next pass will do; a short retry when the very first pass failed.
                log.warning("catch-up pass failed: %s", exc)
                if not self._sleep(min(interval, 30.0)):
                    return
                continue
            if not self._sleep(interval):
                return

    def _sleep(self, interval: float) -> bool:
        """Wait for the next pass: `interval` from now or an earlier requested one. False when stopping."""
        deadline = time.monotonic() + interval
        while not self._stop.is_set():
            with self._lock:
                due = deadline if self._due is None else min(deadline, self._due)
                if time.monotonic() >= due:
                    self._due = None
                    return True
            # A request_pass() after this point sets _wake, so this wait returns and due is read again.
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
        return False

    def run_once(self) -> int:
        """One pass over all pods; returns how many tag jobs it queued."""
        queued = scanned = 0
        for pod in self.kube.list_pods(limit=self.page_size):
            if self._stop.is_set():
                break
            scanned += 1
            for job in self._jobs_for(pod):
                if self.tagger.submit(job):
                    queued += 1
        self.passes += 1
        log.info("catch-up: %d pods scanned, %d images queued for tagging", scanned, queued)
        return queued

    def _jobs_for(self, pod: Obj) -> Iterator[TagJob]:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        record, origin = admission_record(self.store, uid, pod), ""
        if record is None and self.settings.tagging.backfill:
            record, origin = self._backfill_record(uid, pod), "backfill"
        if record is None:
            return
        for started in running_pulls(pod):
            # The event's time and identity when one was seen, as the event path has them.
            pull = self.latest.of(started)
            result = confirm(pull, record, pod)
            if not isinstance(result, Confirmed):
                continue
            planned = plan(
                result,
                self.settings,
                pod_labels=pod_labels(pod),
                namespace_labels=self.kube.namespace_labels(pull.namespace),
            )
            if isinstance(planned, TagPlan) and not self._already_tagged(planned):
                yield TagJob(
                    planned, pull.pod_uid, field_path(pull.container_kind, pull.container), origin=origin
                )

    def _backfill_record(self, uid: str, pod: Obj) -> AdmissionRecord | None:
        """The record of a pod never admitted (no record, no annotation: it started before pulltag was
        installed, or while the webhook was down): its own spec's images. The evidence is still the
        kubelet's: `confirm` takes the digest from the status imageID and nothing else. The store is
        asked again without the annotation fallback: an outage raises (the pass fails and is retried)
        rather than passing an admitted pod off as a never-admitted one."""
        if uid and self.store.get_admission(uid) is not None:
            return None  # written since: the next pass takes it as admitted
        return record_from_spec(pod)

    def _already_tagged(self, planned: TagPlan) -> bool:
        """The ledger says this digest has its tag for the plan's scope: no need to queue it."""
        dry_run = self.settings.listener.dry_run
        return tagged_per_ledger(self.store, planned, dry_run=dry_run) is not None


def record_from_spec(pod: Obj) -> AdmissionRecord | None:
    """An admission record built from the pod's spec (each container's image as written), for backfill."""
    metadata: dict[str, Any] = pod.get("metadata") or {}
    spec: dict[str, Any] = pod.get("spec") or {}
    uid, namespace, name = metadata.get("uid"), metadata.get("namespace"), metadata.get("name")
    if not (isinstance(uid, str) and isinstance(namespace, str) and isinstance(name, str)):
        return None
    images: dict[str, dict[str, str]] = {}
    for kind in CONTAINER_KINDS:
        for c in spec.get(kind) or []:
            if isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("image"), str):
                images.setdefault(kind, {})[c["name"]] = c["image"]
    node = spec.get("nodeName")
    return AdmissionRecord(uid, namespace, name, images, node=node if isinstance(node, str) else None)


def running_pulls(pod: Obj) -> Iterator[Pull]:
    """The pulls the kubelet must have made for the pod's running containers (with an imageID)."""
    metadata: dict[str, Any] = pod.get("metadata") or {}
    spec: dict[str, Any] = pod.get("spec") or {}
    status: dict[str, Any] = pod.get("status") or {}
    namespace, name, uid = metadata.get("namespace"), metadata.get("name"), metadata.get("uid")
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
        return
    for kind, status_field in _STATUS_KINDS:
        images = {c.get("name"): c.get("image") for c in spec.get(kind) or [] if isinstance(c, dict)}
        for cs in status.get(status_field) or []:
            pull = _pull_from_status(cs, images, kind, namespace, name, uid, str(spec.get("nodeName") or ""))
            if pull is not None:
                yield pull


def _pull_from_status(
    cs: Any, images: dict[Any, Any], kind: str, namespace: str, name: str, uid: str, node: str
) -> Pull | None:
    if not isinstance(cs, dict) or not cs.get("imageID"):
        return None
    running = (cs.get("state") or {}).get("running")
    started = parse_timestamp((running or {}).get("startedAt")) if isinstance(running, dict) else None
    container, image = cs.get("name"), images.get(cs.get("name"))
    if started is None or not isinstance(container, str) or not isinstance(image, str):
        return None
    return Pull(
        # Not an event: a stable identity per container run, so scope "every" keys stay stable.
        event_uid=f"catch-up:{uid}:{kind}:{container}",
        event_count=int(cs.get("restartCount") or 0) + 1,
        namespace=namespace,
        pod_name=name,
        pod_uid=uid,
        container_kind=kind,
        container=container,
        image=image,
        already_present=True,
        pulled_at=started,
        node=node,
    )
