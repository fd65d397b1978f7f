"""Builders for the work side's unit tests: settings with one registry, tag plans, ledger entries, and a
tagger, confirmer and reconciler wired to the in-memory fakes (pools not started: tests call `handle`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from listener.confirmer import Confirmer
from listener.metrics import ListenerMetrics
from listener.plan import TagPlan
from listener.reconcile import Reconciler
from listener.seen import LatestPulls, SeenMarks
from listener.tagger import Tagger, TagJob
from pulltag.config import ListenerSettings, RegistrySettings, Settings, TaggingSettings
from pulltag.store.base import LedgerEntry

from .factories import DIGEST
from .fakes import MemoryKube, MemoryRegistry, MemoryStore

REGISTRY = "docker.io"
REPOSITORY = "library/nginx"
IMAGE = f"{REGISTRY}/{REPOSITORY}"


def settings(scope: str = "image", **listener: Any) -> Settings:
    values: dict[str, Any] = {
        "tag_retry_initial_seconds": 0.01,
        "tag_retry_max_seconds": 0.02,
        "confirm_retry_initial_seconds": 0.01,
        "confirm_retry_max_seconds": 0.02,
        "claim_recheck_seconds": 0.01,
    }
    values.update(listener)
    return Settings(
        tagging=TaggingSettings(scope=scope),
        registries=(RegistrySettings(host=REGISTRY),),
        listener=ListenerSettings(**values),
    )


def tag_plan(**changes: Any) -> TagPlan:
    values: dict[str, Any] = {
        "registry": REGISTRY,
        "repository": REPOSITORY,
        "digest": DIGEST,
        "tag": "deployed_prod_20261126-101502",
        "skip_prefix": "deployed_",
        "dedup_key": f"{IMAGE}@{DIGEST}|",
        "namespace": "prod",
        "pod": "web-0",
        "container": "app",
        "node": "node-1",
        "pulled_at": 1_795_000_000.0,
        "image_name": IMAGE,
    }
    values.update(changes)
    return TagPlan(**values)


def entry(outcome: str = "created", tag: str = "deployed_prod_1", **changes: Any) -> LedgerEntry:
    values: dict[str, Any] = {
        "image": IMAGE,
        "digest": DIGEST,
        "tag": tag,
        "namespace": "prod",
        "pod": "web-0",
        "node": "node-1",
        "pulled_at": 1.0,
        "tagged_at": 2.0,
        "outcome": outcome,
        "container": "app",
    }
    values.update(changes)
    return LedgerEntry(**values)


def job(plan_: TagPlan | None = None, seen: frozenset[str] = frozenset({"event-1/1"})) -> TagJob:
    return TagJob(plan_ or tag_plan(), "uid-1", "spec.containers{app}", seen)


class World:
    """The fakes and the work side built on them."""

    def __init__(self, config: Settings | None = None, pods: list[dict[str, Any]] | None = None) -> None:
        self.settings = config or settings()
        self.store = MemoryStore()
        self.registry = MemoryRegistry()
        self.kube = MemoryKube(pods)
        self.metrics = ListenerMetrics()
        self.seen = SeenMarks(self.store)
        self.latest = LatestPulls()
        self.tagger = Tagger(
            self.settings,
            self.store,
            self.kube,
            self.metrics,
            self.seen,
            client_factory=lambda _settings, _observer: self.registry,
        )
        self.confirmer = Confirmer(self.settings, self.store, self.kube, self.metrics, self.seen, self.tagger)
        self.reconciler = Reconciler(self.settings, self.store, self.kube, self.tagger, latest=self.latest)

    def with_listener(self, **listener: Any) -> World:
        return World(replace(self.settings, listener=replace(self.settings.listener, **listener)))

    def tag_jobs(self) -> list[TagJob]:
        """Drain the tagger's queue (delayed jobs included): the jobs it holds."""
        jobs = []
        while len(self.tagger.queue):
            item = self.tagger.queue.get(timeout=5)
            assert item is not None
            jobs.append(item[1])
            self.tagger.queue.done(item[0])
        return jobs
