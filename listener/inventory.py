"""The inventory of running digests (leader only): which digest runs in which namespace, and since when.

Every `listener.inventory_interval_seconds` the leader lists the pods of the cluster page by page (the
same paginated LIST as the catch-up pass, so memory holds one page and one counter per distinct digest,
never the pods), takes the kubelet-written `imageID` of every container, init and ephemeral container of
each running pod in scope, admitted or not, and writes one sighting per (image, digest, namespace) with
its pod count. Only a list read to its end without an error completes a pass (`complete_inventory_pass`):
a 500, an expired continue token (410) or a timeout leaves the previous complete pass as the last one,
which is what a release pass relies on to never act on a partial view. What a failed pass did see is
still written: a sighting only ever protects.

Between passes, confirmed `Pulled` events (a fresh pull or "already present on machine") refresh
last-seen through `refresh`: an O(1) note in memory on the confirmer's thread, written by this thread
every few seconds, so the event path never waits for the store here.

Why not in the catch-up pass's list: that pass runs every few hours and asks the store about each pod;
the inventory runs every few minutes and asks nothing per pod. They share the status reading
(`pulltag.contract.STATUS_FIELDS`, `parse_image_id`), not the schedule.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from listener.kube import ClusterAPI, KubeError
from listener.metrics import ListenerMetrics
from listener.plan import namespace_selected
from pulltag.config import Settings
from pulltag.contract import STATUS_FIELDS
from pulltag.images import InvalidReference, canonical_image_name, parse_image_id
from pulltag.store import InventoryPass, Sighting, Store, StoreError

log = logging.getLogger(__name__)

# Entries not seen for this long are dropped after a complete pass. Far beyond any sensible retention
# grace (168 h by default), so pruning never decides a release; the store stays bounded by what ran in
# the last 90 days.
PRUNE_AFTER_SECONDS = 90 * 24 * 3600.0
# How often event refreshes are written, and how many distinct ones wait at most (beyond: dropped and
# counted; the next pass sees those digests anyway).
FLUSH_SECONDS = 5.0
MAX_PENDING_REFRESHES = 10_000
# A failed pass is tried again after this (or the interval, if shorter).
RETRY_SECONDS = 30.0
# Sightings per store write: one transaction or script each.
WRITE_BATCH = 1000

Key = tuple[str, str, str]  # (image, digest, namespace)


def running_digests(pod: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(image, digest) of every container, init and ephemeral container of a running pod whose status
    carries an imageID with a repository, whatever the container's own state (a finished init container
    of a running pod is needed again by its next replica); nothing for a pod that is not running.
    Pure, never raises: pods are cluster input."""
    status = pod.get("status")
    if not isinstance(status, Mapping):
        return
    all_statuses = [
        cs
        for status_field in STATUS_FIELDS.values()
        if isinstance(statuses := status.get(status_field), list)
        for cs in statuses
        if isinstance(cs, Mapping)
    ]
    if not _running(status.get("phase"), all_statuses):
        return
    for cs in all_statuses:
        image_id = cs.get("imageID")
        if not isinstance(image_id, str) or not image_id:
            continue
        try:
            parsed = parse_image_id(image_id)
        except InvalidReference:
            continue
        if parsed.registry is None or parsed.repository is None:
            continue  # a bare local id names no repository: nothing a tag could protect
        yield canonical_image_name(f"{parsed.registry}/{parsed.repository}"), parsed.digest


def _running(phase: object, statuses: list[Mapping[str, Any]]) -> bool:
    """Phase Running, or a container already running in a pod still Pending (an init container, a
    sidecar): both need their digests now."""
    if phase == "Running":
        return True
    return phase == "Pending" and any(_state_running(cs.get("state")) for cs in statuses)


def _state_running(state: object) -> bool:
    return isinstance(state, Mapping) and isinstance(state.get("running"), Mapping)


def pod_namespace(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return namespace if isinstance(namespace, str) else ""


class Tally:
    """Pods per (image, digest, namespace) over one pass, with the time each was last seen."""

    def __init__(self) -> None:
        self.counts: dict[Key, list[float]] = {}  # key -> [pods, seen_at]

    def add_pod(self, pod: Mapping[str, Any], namespace: str, seen_at: float) -> None:
        # A pod counts once per digest, however many of its containers run it.
        for image, digest in set(running_digests(pod)):
            slot = self.counts.setdefault((image, digest, namespace), [0, seen_at])
            slot[0] += 1
            slot[1] = seen_at

    def sightings(self) -> list[Sighting]:
        return [Sighting(i, d, ns, int(pods), at) for (i, d, ns), (pods, at) in self.counts.items()]

    def digests(self) -> int:
        """Distinct (image, digest) pairs, whatever the namespaces."""
        return len({(image, digest) for image, digest, _ in self.counts})


class Inventory:
    """The inventory loop of one leadership term; `run_once` is one pass (tests and simulations call
    it directly, with their own clock)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        kube: ClusterAPI,
        metrics: ListenerMetrics,
        *,
        clock: Callable[[], float] = time.time,
        page_size: int = 500,
        prune_after_seconds: float = PRUNE_AFTER_SECONDS,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kube = kube
        self.metrics = metrics
        self.clock = clock
        self.page_size = page_size
        # Never forget a digest sooner than retention's grace could still need its last-seen time.
        self.prune_after = max(prune_after_seconds, 2 * settings.retention.grace_hours * 3600.0)
        self.last_pass: InventoryPass | None = None
        self._pending: dict[Key, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the loop ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="inventory", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()

    def age_seconds(self) -> float:
        """Seconds since the last complete pass ended; +Inf when none is known."""
        done = self.last_pass
        return math.inf if done is None else max(0.0, self.clock() - done.completed_at)

    def _loop(self) -> None:
        interval = self.settings.listener.inventory_interval_seconds
        next_pass = time.monotonic() + self._first_delay(interval)
        while not self._stop.is_set():
            if time.monotonic() >= next_pass:
                done = self.run_once()
                next_pass = time.monotonic() + (
                    interval if done is not None else min(interval, RETRY_SECONDS)
                )
            self.flush()
            self._stop.wait(max(0.0, min(FLUSH_SECONDS, next_pass - time.monotonic())))

    def _first_delay(self, interval: float) -> float:
        """A new leader (or a restart) continues the store's schedule: the next pass is due one interval
        after the last complete one, at once when there is none or it cannot be read."""
        try:
            self.last_pass = self.store.last_inventory_pass()
        except StoreError as exc:
            log.warning("inventory: cannot read the last pass (%s); starting one now", exc)
            return 0.0
        if self.last_pass is None:
            return 0.0
        return min(interval, max(0.0, self.last_pass.completed_at + interval - self.clock()))

    # --- one pass ---------------------------------------------------------------------------------------
    def run_once(self) -> InventoryPass | None:
        """List every pod, record what runs; the pass, or None when it did not complete (logged and
        counted by outcome in `pulltag_inventory_passes_total`)."""
        started = self.clock()
        tally = Tally()
        outcome, problem = "complete", ""
        try:
            if not self._list_into(tally):
                outcome, problem = "stopped", "the listener is stopping"
        except KubeError as exc:
            outcome, problem = "list_error", str(exc)
        try:
            self._write(tally.sightings())
            if outcome == "complete":
                done = InventoryPass(started, self.clock(), tally.digests())
                self.store.complete_inventory_pass(done)
                self.last_pass = done
                self._prune(done)
        except StoreError as exc:
            outcome, problem = "store_error", str(exc)
        self.metrics.inventory_passes.labels(outcome).inc()
        if outcome != "complete":
            log.warning("inventory pass not completed (%s): %s", outcome, problem)
            return None
        assert self.last_pass is not None
        self.metrics.inventory_digests.set(self.last_pass.digests)
        log.info("inventory: %d digests running (%d entries)", self.last_pass.digests, len(tally.counts))
        return self.last_pass

    def _list_into(self, tally: Tally) -> bool:
        """Tally every pod of the list; False if stopped before its end."""
        scope = self.settings.namespaces
        for pod in self.kube.list_pods(limit=self.page_size):
            if self._stop.is_set():
                return False
            namespace = pod_namespace(pod)
            if namespace and namespace_selected(namespace, scope):
                tally.add_pod(pod, namespace, self.clock())
        return True

    def _write(self, sightings: list[Sighting]) -> None:
        for start in range(0, len(sightings), WRITE_BATCH):
            self.store.record_sightings(sightings[start : start + WRITE_BATCH])

    def _prune(self, done: InventoryPass) -> None:
        dropped = self.store.prune_inventory(done.started_at - self.prune_after)
        if dropped:
            log.info(
                "inventory: %d entries not seen for %.0f days dropped", dropped, self.prune_after / 86400
            )

    # --- refreshes from the event path ------------------------------------------------------------------
    def refresh(self, image: str, digest: str, namespace: str) -> None:
        """A confirmed pull of `digest` in `namespace`: last-seen is now. Never blocks on I/O."""
        if not namespace_selected(namespace, self.settings.namespaces):
            return
        key = (canonical_image_name(image), digest, namespace)
        with self._lock:
            if key not in self._pending and len(self._pending) >= MAX_PENDING_REFRESHES:
                self.metrics.inventory_refreshes_dropped.inc()
                return
            self._pending[key] = self.clock()

    def flush(self) -> int:
        """Write the pending refreshes (pods=0: the count stays the pass's); on a store error they are
        kept for the next flush. Returns how many were written."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        sightings = [Sighting(i, d, ns, 0, at) for (i, d, ns), at in pending.items()]
        try:
            self._write(sightings)
        except StoreError as exc:
            log.warning("inventory: %d refreshes not written yet (%s)", len(sightings), exc)
            self._keep(pending)
            return 0
        return len(sightings)

    def _keep(self, pending: Mapping[Key, float]) -> None:
        with self._lock:
            for key, at in pending.items():
                if key in self._pending or len(self._pending) < MAX_PENDING_REFRESHES:
                    self._pending[key] = max(at, self._pending.get(key, at))
