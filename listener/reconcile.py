"""Catch-up: tag what runs but was never tagged (events missed while the listener was down longer than
the event TTL, or lost to a crash). At start and every reconcile_interval, list pods page by page; for
each running container of an admitted pod, build the pull the kubelet would have reported, confirm and
plan it exactly like an event, and feed the same tagging queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from listener.confirm import Confirmed, admission_from_annotation, confirm
from listener.kube import KubeClient, KubeError, Obj, pod_labels
from listener.plan import TagPlan, plan
from listener.pulls import Pull, parse_timestamp
from listener.tagger import Tagger, TagJob, field_path_of
from pulltag.config import Settings
from pulltag.store import AdmissionRecord, Store, StoreError

log = logging.getLogger(__name__)

_STATUS_KINDS = (
    ("containers", "containerStatuses"),
    ("initContainers", "initContainerStatuses"),
    ("ephemeralContainers", "ephemeralContainerStatuses"),
)
_DONE = frozenset({"created", "exists"})


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: KubeClient,
        tagger: Tagger,
        *,
        page_size: int = 500,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kube = kube
        self.tagger = tagger
        self.page_size = page_size
        self.dry_run = dry_run
        self.passes = 0
        self.last_queued = 0
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
        self.last_queued = queued
        log.info("catch-up: %d pods scanned, %d images queued for tagging", scanned, queued)
        return queued

    def _jobs_for(self, pod: Obj) -> Iterator[TagJob]:
        record = self._record(pod)
        if record is None:
            return
        for pull in running_pulls(pod):
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
                yield TagJob(planned, pull.pod_uid, field_path_of(pull))

    def _record(self, pod: Obj) -> AdmissionRecord | None:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        record = None
        try:
            record = self.store.get_admission(uid) if uid else None
        except StoreError as exc:
            log.debug("admission lookup for %s failed: %s", uid, exc)
        return record or admission_from_annotation(pod)

    def _already_tagged(self, planned: TagPlan) -> bool:
        """The ledger says this digest has its tag: no need to ask the registry again."""
        wanted = _DONE | {"dry-run"} if self.dry_run else _DONE
        # A miss under scope image or namespace only costs the tagger a registry lookup, which finds the
        # tag. Scope "every" has no registry fallback (each pull has its own name), so its lookup must not
        # miss: ask for this pod's entries, not the digest's newest (a DaemonSet has hundreds).
        every = planned.skip_prefix is None
        try:
            entries = self.store.query_ledger(
                image=planned.image_name,
                digest=planned.digest,
                namespace=planned.namespace if every else None,
                pod=planned.pod if every else None,
                limit=200,
            )
        except StoreError:
            return False
        for entry in entries:
            if entry.outcome not in wanted:
                continue
            if planned.skip_prefix is not None and entry.tag.startswith(planned.skip_prefix):
                return True
            # scope "every": the pull of this very container already has a tag.
            if every and (entry.namespace, entry.pod, entry.container) == (
                planned.namespace,
                planned.pod,
                planned.container,
            ):
                return True
        return False


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
