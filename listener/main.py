"""`pulltag listener`: assemble informer → confirmation → tagging (+ catch-up), serve health and metrics,
campaign for the Lease, and shut down cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType

from listener.health import HealthServer
from listener.informer import Informer, InformerOptions
from listener.kube import KubeClient, Obj, load_config, own_namespace
from listener.leader import ElectionTiming, LeaseElector
from listener.metrics import ListenerMetrics
from listener.pulls import NotAPull, Pull, parse_pull, seen_key
from listener.reconcile import Reconciler
from listener.tagger import (
    ClientFactory,
    Confirmer,
    ConfirmOptions,
    SeenMarks,
    Tagger,
    TaggerOptions,
    default_client_factory,
)
from pulltag.config import Settings
from pulltag.store import Store, StoreError, open_store

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 25.0  # within Kubernetes' default 30 s termination grace period
UNHEALTHY_AFTER_SECONDS = 300.0
# Seen markers outlive the events they mark (1 h event TTL by default) with a margin.
SEEN_TTL_SECONDS = 3 * 3600.0


@dataclass(frozen=True)
class ListenerOptions:
    informer: InformerOptions = field(default_factory=InformerOptions)
    tagger: TaggerOptions = field(default_factory=TaggerOptions)
    confirm: ConfirmOptions = field(default_factory=ConfirmOptions)
    event_queue_size: int = 1000
    seen_ttl_seconds: float = SEEN_TTL_SECONDS
    reconcile: bool = True
    shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS


def transform_event(kind: str, obj: Obj) -> Pull | NotAPull:
    """On the watch thread: pure parsing, no I/O."""
    return parse_pull(obj)


class _Run:
    """One term of work (between start and stop); built fresh each time the listener starts leading."""

    def __init__(self, owner: Listener) -> None:
        o = owner.options
        self.owner = owner
        self.events: queue.Queue[Pull | NotAPull] = queue.Queue(o.event_queue_size)
        self.seen = SeenMarks(owner.store, o.seen_ttl_seconds)
        self.tagger = Tagger(
            owner.settings,
            owner.store,
            owner.kube,
            owner.metrics,
            self.seen,
            dry_run=owner.dry_run,
            client_factory=owner.client_factory,
            options=o.tagger,
            instance=owner.identity,
        )
        self.confirmer = Confirmer(
            owner.settings, owner.store, owner.kube, owner.metrics, self.seen, self.tagger, o.confirm
        )
        self.informer: Informer[Pull | NotAPull] = Informer(
            owner.kube, self.events, transform_event, owner.metrics, o.informer
        )
        self.reconciler = Reconciler(
            owner.settings, owner.store, owner.kube, self.tagger, dry_run=owner.dry_run
        )
        if o.reconcile:
            retry = owner.settings.listener.failed_retry_seconds
            self.tagger.on_gave_up = lambda: self.reconciler.request_pass(retry)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="dispatch", daemon=True)

    def start(self) -> None:
        self.tagger.start()
        self.confirmer.start()
        self._dispatcher.start()
        self.informer.start()
        if self.owner.options.reconcile:
            self.reconciler.start()

    def stop(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        self.informer.stop()
        self.reconciler.stop()
        self._stop.set()
        self._dispatcher.join(2.0)
        # Waiting confirmations are dropped (not marked seen: handled again after a restart);
        # in-flight tags finish within the grace period.
        self.confirmer.stop(deadline)
        if not self.tagger.stop(deadline):
            log.warning("some tags were still in flight at the end of the grace period")

    def queue_depth(self) -> int:
        return self.events.qsize() + len(self.confirmer.queue) + len(self.tagger.queue)

    def _dispatch(self) -> None:
        """Events queue → confirmation queue, dropping occurrences already handled."""
        metrics = self.owner.metrics
        while not self._stop.is_set():
            try:
                item = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(item, NotAPull):
                outcome = "not_kubelet" if item.reason == "not_kubelet" else "invalid"
                metrics.pulls.labels(outcome).inc()
                log.info("event ignored: %s (%s)", outcome, item.reason)
                continue
            if self.seen.is_seen(seen_key(item)):
                continue
            self.confirmer.submit(item)


class Listener:
    """The listener's pipeline; `start`/`stop` may be called repeatedly (once per leadership term)."""

    def __init__(
        self,
        settings: Settings,
        kube: KubeClient,
        store: Store,
        metrics: ListenerMetrics | None = None,
        *,
        dry_run: bool = False,
        identity: str | None = None,
        options: ListenerOptions | None = None,
        client_factory: ClientFactory = default_client_factory,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.store = store
        self.metrics = metrics or ListenerMetrics()
        self.dry_run = dry_run or settings.listener.dry_run
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.options = options or ListenerOptions()
        self.client_factory = client_factory
        self.standby = True  # not leading: nothing to watch, ready and healthy by definition
        self._run: _Run | None = None
        self._lock = threading.Lock()
        self.metrics.queue_depth.set_function(self._queue_depth)
        self.metrics.leader.set_function(lambda: 0.0 if self.standby else 1.0)
        self.metrics.track_store(store.ping)

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
        log.info("listener started (%s%s)", self.identity, ", dry run" if self.dry_run else "")

    def stop(self, grace: float | None = None) -> None:
        with self._lock:
            run, self._run = self._run, None
            self.standby = True
        if run is not None:
            run.stop(self.options.shutdown_grace_seconds if grace is None else grace)
            log.info("listener stopped")

    def _queue_depth(self) -> float:
        run = self._run
        return float(run.queue_depth()) if run is not None else 0.0

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
    dry_run = bool(getattr(args, "dry_run", False)) or settings.listener.dry_run
    try:
        kube = KubeClient(load_config())
    except Exception as exc:  # the kubernetes config loader raises several unrelated types
        print(f"pulltag listener: cannot load Kubernetes configuration: {exc}", flush=True)
        return 1
    store = open_store(
        settings.store.url,
        timeout_seconds=settings.store.timeout_seconds,
        admission_ttl_seconds=settings.store.admission_ttl_seconds,
        ledger_max_entries=settings.store.ledger_max_entries,
    )
    metrics = ListenerMetrics()
    listener = Listener(settings, kube, store, metrics, dry_run=dry_run, options=options_from(settings))
    health = HealthServer(args.metrics_bind, metrics, listener.healthy, listener.ready).start()
    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        if getattr(args, "no_leader_election", False):
            listener.start()
            stop.wait()
            listener.stop()
        else:
            namespace = getattr(args, "namespace", None) or own_namespace()
            elector = LeaseElector(kube, namespace, listener.identity, timing=election_timing(settings))
            elector.run(listener.start, listener.stop, stop)
    finally:
        health.stop()
        store.close()
    log.info("listener exited")
    return 0


def options_from(settings: Settings) -> ListenerOptions:
    """The pipeline's options from the `listener:` configuration section."""
    informer = InformerOptions(
        read_timeout=settings.listener.watch_read_timeout_seconds,
        backoff_cap=settings.listener.watch_backoff_max_seconds,
    )
    tagger = TaggerOptions(claim_ttl_seconds=settings.listener.claim_ttl_seconds)
    return ListenerOptions(informer=informer, tagger=tagger)


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
