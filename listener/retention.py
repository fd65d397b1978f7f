"""Retention: which of pulltag's own tags no longer protect anything. Pure: plain data in, decisions out.

A tag is released only if ALL hold (each rule below keeps it otherwise, and names why):

- the ledger says this pulltag created it (only `created` entries are considered at all);
- no final release outcome (`released`, `moved`, `immutable`) was recorded for it since;
- its name renders from this configuration's template (`TemplateMatcher`): with `{cluster}` in the
  template, clusters sharing a registry (or a store) never touch each other's tags, and a tag made by hand
  with the same prefix never matches;
- its digest is not running now (an inventory entry seen by the last complete inventory pass);
- its digest was not seen running within `grace_hours` (inventory `last_seen`, or a ledger pull time);
- its digest is not among the newest `keep_last` deployed digests of its repository and namespace;
- the tag is older than `min_age_hours`, and was created before the last inventory pass began;
- the inventory the decision rests on is complete and fresh (`inventory_blocker`): on doubt, keep.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pulltag.config import RetentionSettings, TaggingSettings
from pulltag.store import InventoryEntry, InventoryPass, LedgerEntry

__all__ = [
    "DEPLOYED",
    "FINAL",
    "RELEASE_OUTCOMES",
    "Action",
    "TagDecision",
    "TemplateMatcher",
    "inventory_blocker",
    "plan_retention",
]

Action = Literal["keep", "release", "done"]

# Ledger outcomes that say a digest was deployed in a namespace (ranked for keep_last).
DEPLOYED = frozenset({"created", "exists", "skipped"})
# A release outcome after which the tag is not looked at again: gone, someone else's now, or protected.
FINAL = frozenset({"released", "moved", "immutable"})
# Every outcome a release pass records ("unsupported" is retried: the registry may be upgraded).
RELEASE_OUTCOMES = FINAL | {"unsupported"}

# Kubernetes names (namespace, pod, container, node) are DNS labels or subdomains: never an underscore,
# which is what keeps the segments of "{prefix}_{namespace}_{cluster}_..." apart.
_NAME = r"[A-Za-z0-9.-]+"
# Fixed-width numeric strftime directives; anything else (%a, %b, %Z, %c...) is matched loosely.
_DIRECTIVES = {
    "Y": r"[0-9]{4}",
    "G": r"[0-9]{4}",
    "m": r"[0-9]{2}",
    "d": r"[0-9]{2}",
    "H": r"[0-9]{2}",
    "I": r"[0-9]{2}",
    "M": r"[0-9]{2}",
    "S": r"[0-9]{2}",
    "y": r"[0-9]{2}",
    "U": r"[0-9]{2}",
    "W": r"[0-9]{2}",
    "V": r"[0-9]{2}",
    "j": r"[0-9]{3}",
    "f": r"[0-9]{6}",
    "u": r"[0-9]",
    "w": r"[0-9]",
    "s": r"[0-9]+",
    "z": r"(?:[-][0-9]{4})?",  # "+0100" sanitised to "-0100"; empty for a naive time
}
_LOOSE = r"[A-Za-z0-9.-]+"
_TAG_CHAR = re.compile(r"[^A-Za-z0-9._-]")
# listener.plan.fallback_tag: "_" and the first 12 hex digits of the digest, when the name was taken.
_FALLBACK = r"(?:_[0-9a-f]{12})?"


def _literal(text: str) -> str:
    """A literal part of the template as it appears in a tag: sanitised like `sanitize_tag`, escaped."""
    return re.escape(_TAG_CHAR.sub("-", text))


def _timestamp_pattern(fmt: str) -> str:
    parts: list[str] = []
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%" and i + 1 < len(fmt):
            directive = fmt[i + 1]
            parts.append(_literal("%") if directive == "%" else _DIRECTIVES.get(directive, _LOOSE))
            i += 2
            continue
        parts.append(_literal(char))
        i += 1
    return "".join(parts)


class TemplateMatcher:
    """Does a tag name render from this template? Literal parts, `{prefix}` and `{cluster}` must match
    exactly; `{timestamp}` follows `timestamp_format`; the Kubernetes names are label-like segments; the
    digest suffix `listener.plan.fallback_tag` adds on a name clash is allowed."""

    def __init__(self, tagging: TaggingSettings) -> None:
        import string

        values = {
            "prefix": _literal(tagging.prefix),
            "cluster": _literal(tagging.cluster),
            "timestamp": _timestamp_pattern(tagging.timestamp_format),
            "namespace": _NAME,
            "pod": _NAME,
            "container": _NAME,
            "node": _NAME,
        }
        pattern: list[str] = []
        for literal, name, _, _ in string.Formatter().parse(tagging.template):
            pattern.append(_literal(literal))
            if name is not None:
                pattern.append(values[name])
        self.pattern = re.compile("".join(pattern) + _FALLBACK)

    def matches(self, tag: str) -> bool:
        return self.pattern.fullmatch(tag) is not None


@dataclass(frozen=True)
class TagDecision:
    """One tag pulltag created: `release` it, `keep` it, or `done` (a final release outcome is recorded).
    `reason` is short and stable (tests and `pulltag retention plan` read it); `detail` is for people."""

    image: str  # registry/repository, as the ledger writes it
    tag: str
    digest: str
    namespace: str
    created_at: float
    action: Action
    reason: str
    detail: str = ""

    @property
    def registry(self) -> str:
        return self.image.partition("/")[0]

    @property
    def repository(self) -> str:
        return self.image.partition("/")[2]


def inventory_blocker(last_pass: InventoryPass | None, now: float, max_age_seconds: float) -> str | None:
    """Why the inventory cannot back a release now (None: it can): none complete yet, or too old."""
    if last_pass is None:
        return "no_inventory"
    if now - last_pass.completed_at > max_age_seconds or last_pass.completed_at < last_pass.started_at:
        return "stale_inventory"
    return None


@dataclass(frozen=True)
class _Facts:
    """What the ledger and the inventory say, indexed for the per-tag rules."""

    running: frozenset[tuple[str, str]]  # (image, digest) running now
    last_seen: dict[tuple[str, str], float]  # (image, digest) -> last time seen running
    protected: frozenset[tuple[str, str, str]]  # (image, namespace, digest) among the newest keep_last
    final: dict[tuple[str, str, str], LedgerEntry]  # (image, tag, digest) -> newest final outcome
    started_at: float | None  # when the last complete inventory pass began


def _facts(
    ledger: Sequence[LedgerEntry],
    inventory: Sequence[InventoryEntry],
    last_pass: InventoryPass | None,
    keep_last: int,
) -> _Facts:
    running = frozenset(
        (e.image, e.digest)
        for e in inventory
        if last_pass is not None and e.last_seen >= last_pass.started_at
    )
    last_seen: dict[tuple[str, str], float] = {}
    deployed: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    final: dict[tuple[str, str, str], LedgerEntry] = {}

    def saw(image: str, namespace: str, digest: str, seen: float, deployed_at: float) -> None:
        key = (image, digest)
        last_seen[key] = max(last_seen.get(key, seen), seen)
        per_ns = deployed[(image, namespace)]
        per_ns[digest] = max(per_ns.get(digest, deployed_at), deployed_at)

    for entry in ledger:
        if entry.outcome in DEPLOYED:
            # It was pulled (so running) at pulled_at: evidence for a digest the inventory never saw.
            saw(entry.image, entry.namespace, entry.digest, entry.pulled_at, entry.pulled_at)
        elif entry.outcome in FINAL:
            key = (entry.image, entry.tag, entry.digest)
            if key not in final or entry.tagged_at > final[key].tagged_at:
                final[key] = entry
    for item in inventory:
        saw(item.image, item.namespace, item.digest, item.last_seen, item.first_seen)
    protected = frozenset(
        (image, namespace, digest)
        for (image, namespace), digests in deployed.items()
        for digest in _newest(digests, keep_last)
    )
    return _Facts(running, last_seen, protected, final, last_pass.started_at if last_pass else None)


def _newest(deployed_at: dict[str, float], keep_last: int) -> list[str]:
    """The `keep_last` most recently deployed digests (ties broken by digest, so replicas agree)."""
    ranked = sorted(deployed_at.items(), key=lambda item: (-item[1], item[0]))
    return [digest for digest, _ in ranked[:keep_last]]


def _created(ledger: Iterable[LedgerEntry]) -> list[LedgerEntry]:
    """Each tag pulltag created, once (its newest `created` entry), oldest first."""
    newest: dict[tuple[str, str], LedgerEntry] = {}
    for entry in ledger:
        if entry.outcome != "created":
            continue
        key = (entry.image, entry.tag)
        if key not in newest or entry.tagged_at > newest[key].tagged_at:
            newest[key] = entry
    return sorted(newest.values(), key=lambda e: (e.tagged_at, e.image, e.tag))


def plan_retention(
    *,
    ledger: Sequence[LedgerEntry],
    inventory: Sequence[InventoryEntry],
    last_pass: InventoryPass | None,
    tagging: TaggingSettings,
    retention: RetentionSettings,
    now: float,
    max_inventory_age: float,
) -> list[TagDecision]:
    """A decision for every tag the ledger says pulltag created (oldest first)."""
    matcher = TemplateMatcher(tagging)
    facts = _facts(ledger, inventory, last_pass, retention.keep_last)
    blocker = inventory_blocker(last_pass, now, max_inventory_age)
    return [_decide(entry, facts, matcher, retention, now, blocker) for entry in _created(ledger)]


def _decide(
    created: LedgerEntry,
    facts: _Facts,
    matcher: TemplateMatcher,
    retention: RetentionSettings,
    now: float,
    blocker: str | None,
) -> TagDecision:
    image, digest = created.image, created.digest

    def decision(action: Action, reason: str, detail: str = "") -> TagDecision:
        return TagDecision(
            image, created.tag, digest, created.namespace, created.tagged_at, action, reason, detail
        )

    final = facts.final.get((image, created.tag, digest))
    if final is not None and final.tagged_at >= created.tagged_at:
        return decision("done", final.outcome, final.reason)
    if not matcher.matches(created.tag):
        return decision("keep", "foreign_name", "does not render from this tagging.template")
    if (image, digest) in facts.running:
        return decision("keep", "running", "running now")
    seen = facts.last_seen.get((image, digest))
    grace = retention.grace_hours * 3600.0
    if seen is not None and now - seen < grace:
        return decision("keep", "grace", f"seen running {_hours(now - seen)} ago")
    if (image, created.namespace, digest) in facts.protected:
        return decision("keep", "keep_last", f"among the newest {retention.keep_last} in {created.namespace}")
    age = now - created.tagged_at
    if age < retention.min_age_hours * 3600.0:
        return decision("keep", "too_young", f"created {_hours(age)} ago")
    if facts.started_at is not None and created.tagged_at >= facts.started_at:
        # Its pod may have started after the list began: the inventory cannot vouch for it yet.
        return decision("keep", "newer_than_inventory", "created after the last inventory pass began")
    if blocker is not None:
        return decision("keep", blocker, "the inventory cannot vouch for it now")
    last = f"last seen running {_hours(now - seen)} ago" if seen is not None else "never seen running"
    return decision("release", "stale", last)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f}h"
