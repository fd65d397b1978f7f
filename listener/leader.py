"""Leader election on a coordination.k8s.io/v1 Lease, over raw JSON.

Why not `kubernetes.leaderelection`: its `run()` blocks in `acquire()` with no way to stop, it never
releases the lease on shutdown (a successor waits a whole lease duration), it reads the lease through the
client's models and global configuration, and it updates without checking the resourceVersion it read.
This elector keeps client-go's semantics: a candidate takes the lease when it is free or expired as
observed on its own clock (no clock-skew trust), updates carry the resourceVersion they read (a 409
means someone else won), the leader renews every retry period and steps down when it could not renew
within the renew deadline, and a leader that stops releases the lease (holder cleared).

Correctness never depends on this: claims in the store and deterministic tag names keep two overlapping
leaders from creating two tags. The lease only keeps the second replica from doing needless work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from listener.kube import KubeClient, KubeError, Obj

log = logging.getLogger(__name__)

LEASE_NAME = "pulltag-listener"


@dataclass(frozen=True)
class ElectionTiming:
    lease_seconds: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        identity: str,
        name: str = LEASE_NAME,
        timing: ElectionTiming | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.timing = timing or ElectionTiming()
        self.leading = threading.Event()
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0  # monotonic time it last changed
        ns, lease = quote(namespace, safe=""), quote(name, safe="")
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{lease}"

    # --- the loop -------------------------------------------------------------------------------------

    def run(
        self, on_started: Callable[[], None], on_stopped: Callable[[], None], stop: threading.Event
    ) -> None:
        """Campaign until `stop`; call `on_started` when leading and `on_stopped` when no longer."""
        while not stop.is_set():
            if not self.try_acquire_or_renew():
                stop.wait(self.timing.retry_period)
                continue
            log.info("%s leads (lease %s/%s)", self.identity, self.namespace, self.name)
            self.leading.set()
            try:
                on_started()
                self._renew_until_lost(stop)
            finally:
                self.leading.clear()
                on_stopped()
            if stop.is_set():
                self.release()
            else:
                log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)

    def _renew_until_lost(self, stop: threading.Event) -> None:
        last_renew = time.monotonic()
        while not stop.wait(self.timing.retry_period):
            if self.try_acquire_or_renew():
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew > self.timing.renew_deadline:
                return

    # --- one attempt ----------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        try:
            lease = self.kube.get(self._path)
            if lease is None:
                return self._create()
            return self._update(lease)
        except KubeError as exc:
            if exc.conflict:
                log.debug("lease update conflict: another candidate won")
            else:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def _create(self) -> bool:
        now = _now_micro()
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.lease_seconds),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            self.kube.create(self._path.rsplit("/", 1)[0], body)
        except KubeError as exc:
            if exc.conflict:  # 409 AlreadyExists: someone created it first
                return False
            raise
        return True

    def _update(self, lease: Obj) -> bool:
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        observed = (holder, str(spec.get("renewTime") or ""))
        if observed != self._observed:
            self._observed, self._observed_at = observed, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_seconds)
        held_by_other = holder and holder != self.identity
        if held_by_other and time.monotonic() < self._observed_at + duration:
            return False
        now = _now_micro()
        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.timing.lease_seconds),
            renewTime=now,
        )
        if holder != self.identity:
            new_spec.update(acquireTime=now, leaseTransitions=transitions + 1)
        body = dict(lease)
        body["spec"] = new_spec  # metadata (with resourceVersion) as read: a 409 means we lost a race
        self.kube.replace(self._path, body)
        return True

    def release(self) -> None:
        """Give the lease up at once so a successor need not wait for it to expire."""
        try:
            lease = self.kube.get(self._path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = dict(lease.get("spec") or {})
            now = _now_micro()
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
            body = dict(lease)
            body["spec"] = spec
            self.kube.replace(self._path, body)
            log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, exc)
