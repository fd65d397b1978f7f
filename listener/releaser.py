"""The release pass (leader only, every `retention.interval_seconds`): delete the tags `plan_retention`
says no longer protect anything, by tag only, never on doubt.

A pass releases nothing, and says why (log + `pulltag_retention_passes_total{outcome}`), when retention is
off, when the inventory is missing or older than `listener.inventory_interval_seconds` (+ slack), or when
the store cannot be read. It stops at the first store error or registry failure it meets while
deleting. Each deletion is conditional (`delete_tag` checks the tag still points at the recorded digest)
and its outcome goes to the ledger, so a pass killed midway is finished by the next one without
deleting anything twice: a tag already gone is `absent`, recorded as `released`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from listener.metrics import ListenerMetrics
from listener.retention import RELEASE_OUTCOMES, TagDecision, inventory_blocker, plan_retention
from pulltag.config import RegistrySettings, Settings
from pulltag.store import LedgerEntry, Outcome, Store, StoreError

log = logging.getLogger(__name__)

# The inventory may be this much older than its interval (a pass that takes a while to list).
INVENTORY_SLACK_SECONDS = 120.0
PASS_CLAIM_KEY = "retention:pass"


class Deleter(Protocol):
    def delete_tag(self, repository: str, tag: str, digest: str) -> str: ...


DeleterFactory = Callable[[RegistrySettings], Deleter]


def default_deleter_factory(settings: RegistrySettings) -> Deleter:
    from listener.registry import registry_client

    client: Deleter = registry_client(settings)
    return client


def max_inventory_age(settings: Settings) -> float:
    return settings.listener.inventory_interval_seconds + INVENTORY_SLACK_SECONDS


def read_plan(store: Store, settings: Settings, now: float) -> tuple[list[TagDecision], str | None]:
    """Every tag pulltag created and its decision, and why the inventory cannot back a release now (None
    when it can), from the store (raises StoreError)."""
    last_pass = store.last_inventory_pass()
    ledger = store.query_ledger(limit=settings.store.ledger_max_entries)
    inventory = store.inventory()
    max_age = max_inventory_age(settings)
    decisions = plan_retention(
        ledger=ledger,
        inventory=inventory,
        last_pass=last_pass,
        tagging=settings.tagging,
        retention=settings.retention,
        now=now,
        max_inventory_age=max_age,
    )
    return decisions, inventory_blocker(last_pass, now, max_age)


@dataclass
class PassReport:
    """What one pass did: `outcome` (a metric label) and the tags it acted on, with their outcomes."""

    outcome: str
    detail: str = ""
    acted: list[tuple[TagDecision, str]] = field(default_factory=list)


class _Stop(Exception):
    """Ends a pass early: (outcome, detail)."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class Releaser:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: ListenerMetrics,
        *,
        deleter_factory: DeleterFactory = default_deleter_factory,
        clock: Callable[[], float] = time.time,
        refresh: Callable[[], object] | None = None,
    ) -> None:
        """`refresh`: one inventory pass (`listener.inventory.Inventory.run_once`), run right before
        deciding; when it does not complete (it returns None: a list error, 500 or 410 mid-list, a
        timeout) or raises, the pass releases nothing."""
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.deleter_factory = deleter_factory
        self.clock = clock
        self.refresh = refresh
        self.unsupported: set[str] = set()  # registries that refused tag deletion (reported once each)
        self._clients: dict[str, Deleter] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        # The first pass waits one interval: the inventory needs its first complete pass anyway.
        while not self._stop.wait(self.settings.retention.interval_seconds):
            try:
                self.run_once()
            except Exception:  # a bug must not end the leader's passes silently
                log.exception("release pass failed")
                self.metrics.retention_passes.labels("error").inc()

    def run_once(self) -> PassReport:
        """One release pass now."""
        report = self._pass()
        self.metrics.retention_passes.labels(report.outcome).inc()
        released = sum(1 for _, outcome in report.acted if outcome == "released")
        level = logging.INFO if report.outcome == "ran" else logging.WARNING
        log.log(level, "release pass: %s (%d released)%s", report.outcome, released, _detail(report.detail))
        return report

    def _pass(self) -> PassReport:
        if not self.settings.retention.enabled:
            return PassReport("disabled", "retention.enabled is false")
        try:
            if not self.store.claim(PASS_CLAIM_KEY, self.settings.retention.interval_seconds):
                return PassReport("busy", "another pass holds the claim")
        except StoreError as exc:
            return PassReport("store_error", str(exc))
        try:
            return self._claimed_pass()
        finally:
            try:
                self.store.release(PASS_CLAIM_KEY)
            except StoreError as exc:
                log.warning("could not release the pass claim (it expires): %s", exc)

    def _claimed_pass(self) -> PassReport:
        if self.refresh is not None:
            try:
                if self.refresh() is None:
                    return PassReport("inventory_error", "the inventory pass before it did not complete")
            except StoreError as exc:
                return PassReport("store_error", f"inventory: {exc}")
            except Exception as exc:  # whatever the list failed with, the inventory is in doubt
                return PassReport("inventory_error", f"{type(exc).__name__}: {exc}")
        now = self.clock()
        try:
            decisions, blocker = read_plan(self.store, self.settings, now)
        except StoreError as exc:
            return PassReport("store_error", str(exc))
        if blocker is not None:
            return PassReport(blocker, "the inventory cannot vouch for what runs now")
        report = PassReport("ran")
        if self.settings.listener.dry_run:
            report.outcome = "dry_run"
            report.acted = [(d, "dry-run") for d in decisions if d.action == "release"]
            return report
        try:
            for decision in decisions:
                if self._stop.is_set():  # leadership lost or shutting down: the next leader finishes
                    raise _Stop("stopped", "the listener is stopping")
                if decision.action == "release":
                    self._release(decision, report)
        except _Stop as stop:
            report.outcome, report.detail = stop.outcome, stop.detail
        return report

    def _release(self, decision: TagDecision, report: PassReport) -> None:
        registry = self.settings.registry_for(decision.registry)
        if registry is None:
            return  # not configured any more: nothing to delete with, and no doubt to resolve
        if registry.host in self.unsupported:
            return
        try:
            answer = self._client(registry).delete_tag(decision.repository, decision.tag, decision.digest)
        except Exception as exc:  # registry doubt: stop here, the next pass picks up the rest
            raise _Stop("registry_error", f"{registry.host}: {exc}") from exc
        outcome, reason = _ledger_outcome(answer)
        if outcome == "unsupported":
            self.unsupported.add(registry.host)
            log.warning(
                "%s refuses tag deletion: pulltag's tags there are not released (use the registry's own "
                "retention rules, `pulltag retention policy`); it is not asked again until restart",
                registry.host,
            )
        self._record(decision, outcome, reason)
        self.metrics.tags_released.labels(registry.host, outcome).inc()
        report.acted.append((decision, outcome))
        log.info("release %s:%s (%s): %s", decision.image, decision.tag, decision.digest, outcome)

    def _record(self, decision: TagDecision, outcome: Outcome, reason: str) -> None:
        entry = LedgerEntry(
            image=decision.image,
            digest=decision.digest,
            tag=decision.tag,
            namespace=decision.namespace,
            pod="",
            node="",
            pulled_at=decision.created_at,
            tagged_at=self.clock(),
            outcome=outcome,
            reason=reason,
        )
        try:
            self.store.append_ledger(entry)
        except StoreError as exc:
            # The deletion happened; the next pass finds the tag absent and records it then.
            raise _Stop("store_error", str(exc)) from exc

    def _client(self, registry: RegistrySettings) -> Deleter:
        client = self._clients.get(registry.host)
        if client is None:
            client = self._clients[registry.host] = self.deleter_factory(registry)
        return client


def _ledger_outcome(answer: str) -> tuple[Outcome, str]:
    """`delete_tag`'s answer as a ledger outcome: a tag already gone counts as released."""
    if answer == "absent":
        return "released", "already gone"
    if answer in RELEASE_OUTCOMES:
        outcome: Outcome = answer  # type: ignore[assignment]
        return outcome, "retention"
    raise _Stop("registry_error", f"unexpected delete_tag answer {answer!r}")


def _detail(text: str) -> str:
    return f": {text}" if text else ""
