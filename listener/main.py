"""`pulltag listener`: assemble informer → confirmation → tagging (+ catch-up), serve health and metrics,
campaign for the Lease, and shut down cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from listener.certificates import with_certificates
from listener.confirmer import Confirmer
from listener.health import HealthServer
from listener.informer import Informer, InformerOptions
from listener.inventory import Inventory
from listener.kube import KubeClient, Obj, load_config, own_namespace
from listener.leader import ElectionTiming, LeaseElector
from listener.metrics import ListenerMetrics
from listener.pulls import NotAPull, Pull, parse_pull, seen_key
from listener.reconcile import Reconciler
from listener.releaser import Releaser
from listener.seen import LatestPulls, SeenMarks
from listener.tagger import ClientFactory, Tagger, default_client_factory
from pulltag.config import Settings
from pulltag.store import Store, StoreError, open_store

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 25.0  # within Kubernetes' default 30 s termination grace period
UNHEALTHY_AFTER_SECONDS = 300.0
EVENT_QUEUE_SIZE = 1000


def transform_event(kind: str, obj: Obj) -> Pull | NotAPull:
    """On the watch thread: pure parsing, no I/O."""
    return parse_pull(obj)


class _Barrier:
    """Put in the events queue once the informer's initial list is in it: when the dispatcher reaches
    it, every event of that list has been dispatched (the queue is first in, first out)."""

    def __init__(self) -> None:
        self.reached = threading.Event()


Item = Pull | NotAPull | _Barrier


class _Run:
    """One term of work (between start and stop); built fresh each time the listener starts leading."""

    def __init__(self, owner: Listener) -> None:
        settings = owner.settings
        self.owner = owner
        self.events: queue.Queue[Item] = queue.Queue(EVENT_QUEUE_SIZE)
        self.seen = SeenMarks(owner.store)
        self.latest = LatestPulls()
        self.tagger = Tagger(
            settings,
            owner.store,
            owner.kube,
            owner.metrics,
            self.seen,
            client_factory=owner.client_factory,
            instance=owner.identity,
            clock=owner.clock,
        )
        self.confirmer = Confirmer(settings, owner.store, owner.kube, owner.metrics, self.seen, self.tagger)
        self.inventory = Inventory(settings, owner.store, owner.kube, owner.metrics, clock=owner.clock)
        self.confirmer.on_confirmed = self.inventory.refresh
        self.informer: Informer[Item] = Informer(
            owner.kube, self.events, transform_event, owner.metrics, informer_options(settings)
        )
        self.reconciler = Reconciler(
            settings,
            owner.store,
            owner.kube,
            self.tagger,
            latest=self.latest,
            wait_ready=self.initial_list_dispatched,
        )
        if settings.listener.catch_up:
            retry = settings.listener.failed_retry_seconds
            self.tagger.on_gave_up = lambda: self.reconciler.request_pass(retry)
        self.releaser = _releaser(owner, self.inventory)
        self._stop = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="dispatch", daemon=True)

    def start(self) -> None:
        self.tagger.start()
        self.confirmer.start()
        self._dispatcher.start()
        self.informer.start()
        self.inventory.start()
        if self.owner.settings.listener.catch_up:
            self.reconciler.start()
        if self.releaser is not None:
            self.releaser.start()

    def stop(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        self.informer.stop()
        self.reconciler.stop()
        if self.releaser is not None:
            self.releaser.stop()
        self.inventory.stop()
        self._stop.set()
        self._dispatcher.join(2.0)
        # Waiting confirmations are dropped (not marked seen: handled again after a restart);
        # in-flight tags finish within the grace period.
        self.confirmer.stop(deadline)
        if not self.tagger.stop(deadline):
            log.warning("some tags were still in flight at the end of the grace period")

    def queue_depth(self) -> int:
        return self.events.qsize() + len(self.confirmer.queue) + len(self.tagger.queue)

    def initial_list_dispatched(self, stop: threading.Event) -> bool:
        """Wait until every event of the informer's first list has been dispatched; False if `stop` came
        first. The catch-up pass waits for this so that it knows those events' pulls (the race it ends:
        a container tagged with its start time although its `Pulled` event was in that list)."""
        while not self.informer.synced.wait(0.5):
            if stop.is_set():
                return False
        barrier = _Barrier()
        while True:
            if stop.is_set():
                return False
            try:
                self.events.put(barrier, timeout=0.5)
                break
            except queue.Full:
                continue
        while not barrier.reached.wait(0.5):
            if stop.is_set():
                return False
        return True

    def _dispatch(self) -> None:
        """Events queue → confirmation queue, dropping occurrences already handled."""
        metrics = self.owner.metrics
        while not self._stop.is_set():
            try:
                item = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(item, _Barrier):
                item.reached.set()
                continue
            if isinstance(item, NotAPull):
                outcome = "not_kubelet" if item.reason == "not_kubelet" else "invalid"
                metrics.pulls.labels(outcome).inc()
                log.info("event ignored: %s (%s)", outcome, item.reason)
                continue
            self.latest.add(item)  # handled or not: the catch-up pass takes this container's pull from it
            if self.seen.is_seen(seen_key(item)):
                continue
            self.confirmer.submit(item)


def _releaser(owner: Listener, inventory: Inventory) -> Releaser | None:
    """The release pass when retention is on; built per term, so only the leader runs passes. Each pass
    first lists the pods again (`refresh`): one that does not complete releases nothing."""
    if not owner.settings.retention.enabled:
        return None
    return Releaser(owner.settings, owner.store, owner.metrics, clock=owner.clock, refresh=inventory.run_once)


class Listener:
    """The listener's pipeline; `start`/`stop` may be called repeatedly (once per leadership term)."""

    def __init__(
        self,
        settings: Settings,
        kube: KubeClient,
        store: Store,
        metrics: ListenerMetrics | None = None,
        *,
        identity: str | None = None,
        client_factory: ClientFactory = default_client_factory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock  # wall time for every decision of a term (tests and simulations drive it)
        self.kube = kube
        self.store = store
        self.metrics = metrics or ListenerMetrics()
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.client_factory = client_factory
        self.standby = True  # not leading: nothing to watch, ready and healthy by definition
        self._run: _Run | None = None
        self._lock = threading.Lock()
        self.metrics.queue_depth.set_function(self._queue_depth)
        self.metrics.inventory_age_seconds.set_function(self._inventory_age)
        self.metrics.leader.set_function(lambda: 0.0 if self.standby else 1.0)
        self.metrics.track_store(store.ping)
        self.metrics.start_registries(registry.host for registry in settings.registries)

    @property
    def current(self) -> _Run | None:
        return self._run

    def start(self) -> None:
        with self._lock:
            if self._run is not None:
                return
            self._run = _Run(self)
            self.standby = False
            self._run.start()
        dry_run = ", dry run" if self.settings.listener.dry_run else ""
        log.info("listener started (%s%s)", self.identity, dry_run)

    def stop(self, grace: float | None = None) -> None:
        with self._lock:
            run, self._run = self._run, None
            self.standby = True
        if run is not None:
            run.stop(SHUTDOWN_GRACE_SECONDS if grace is None else grace)
            log.info("listener stopped")

    def _queue_depth(self) -> float:
        run = self._run
        return float(run.queue_depth()) if run is not None else 0.0

    def _inventory_age(self) -> float:
        run = self._run
        return run.inventory.age_seconds() if run is not None else math.nan

    # --- health -----------------------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        run = self._run
        if run is None:
            return True, "standby"
        idle = run.informer.seconds_since_activity()
        if idle > UNHEALTHY_AFTER_SECONDS:
            return False, f"no healthy watch for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        try:
            self.store.ping()
        except StoreError as exc:
            return False, str(exc)
        run = self._run
        if run is not None and not run.informer.synced.is_set():
            return False, "waiting for the first list"
        return True, "ok" if run is not None else "standby"


# ---------------------------------------------------------------------------------------------------
# The command


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_flags(settings, dry_run=bool(getattr(args, "dry_run", False)))
    try:
        kube = KubeClient(load_config())
    except Exception as exc:  # the kubernetes config loader raises several unrelated types
        print(f"pulltag listener: cannot load Kubernetes configuration: {exc}", flush=True)
        return 1
    store = open_store(settings.store)
    metrics = ListenerMetrics()
    listener = Listener(settings, kube, store, metrics)
    health = HealthServer(args.metrics_bind, metrics, listener.healthy, listener.ready).start()
    stop = threading.Event()
    _install_signal_handlers(stop)
    # A term (leading, or the whole run without election) also keeps the webhook's certificates.
    start_term, stop_term = with_certificates(args, kube, listener.start, listener.stop)
    try:
        if getattr(args, "no_leader_election", False):
            start_term()
            stop.wait()
            stop_term()
        else:
            namespace = getattr(args, "namespace", None) or own_namespace()
            elector = LeaseElector(kube, namespace, listener.identity, timing=election_timing(settings))
            elector.run(start_term, stop_term, stop)
    finally:
        health.stop()
        store.close()
    log.info("listener exited")
    return 0


def with_flags(settings: Settings, *, dry_run: bool) -> Settings:
    """The settings with the command line's flags folded in, once: `--dry-run` turns a dry run on (the
    configuration's `listener.dry_run` can too); everything downstream reads `settings.listener`."""
    if not dry_run:
        return settings
    return replace(settings, listener=replace(settings.listener, dry_run=True))


def informer_options(settings: Settings) -> InformerOptions:
    """The informer's options from the `listener:` configuration section."""
    return InformerOptions(
        read_timeout=settings.listener.watch_read_timeout_seconds,
        backoff_initial=settings.listener.watch_backoff_initial_seconds,
        backoff_cap=settings.listener.watch_backoff_max_seconds,
        healthy_stream_seconds=settings.listener.watch_healthy_stream_seconds,
    )


def election_timing(settings: Settings) -> ElectionTiming:
    """client-go's proportions (15 s lease, 10 s renew deadline, 2 s retry) scaled to the lease duration."""
    lease = settings.listener.lease_duration_seconds
    return ElectionTiming(lease_seconds=lease, renew_deadline=lease * 2 / 3, retry_period=lease * 2 / 15)


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
    else:  # embedded (tests): the caller stops the process some other way
        log.debug("not in the main thread (pid %d): no signal handlers", os.getpid())
