"""`pulltag inventory`: the digests running now, from the store alone (a read-only view).

A digest runs now in a namespace iff its inventory entry was seen at or after the start of the last
complete inventory pass. Each row is one digest of one image: the namespaces it runs in, its pods, when
it was first and last seen, and the tags that protect it (the ledger's `created` entries for it, minus
tags whose newest entry says they were released).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pulltag.store import InventoryEntry, InventoryPass, LedgerEntry

# The ledger's outcome for a tag pulltag has since deleted (added with retention); such a tag protects
# nothing any more.
RELEASED = "released"


@dataclass(frozen=True)
class RunningDigest:
    registry: str
    repository: str
    digest: str
    namespaces: tuple[str, ...]
    pods: int
    first_seen: float
    last_seen: float
    tags: tuple[str, ...]

    @property
    def image(self) -> str:
        return f"{self.registry}/{self.repository}"


def running_now(entries: Iterable[InventoryEntry], last: InventoryPass | None) -> list[InventoryEntry]:
    """The entries seen in or after the last complete pass; none without a complete pass."""
    if last is None:
        return []
    return [e for e in entries if e.last_seen >= last.started_at]


def protecting_tags(ledger: Sequence[LedgerEntry]) -> tuple[str, ...]:
    """The tags created for one digest (`ledger` newest first) whose newest entry is not a release."""
    newest: dict[str, str] = {}
    for entry in ledger:
        newest.setdefault(entry.tag, str(entry.outcome))
    created = {entry.tag for entry in ledger if entry.outcome == "created"}
    return tuple(sorted(tag for tag in created if newest[tag] != RELEASED))


def group(
    entries: Iterable[InventoryEntry], ledger_of: Callable[[str, str], Sequence[LedgerEntry]]
) -> list[RunningDigest]:
    """One row per (image, digest), ordered by image then digest; `ledger_of(image, digest)` gives the
    ledger entries of that digest, newest first."""
    by_digest: dict[tuple[str, str], list[InventoryEntry]] = {}
    for entry in entries:
        by_digest.setdefault((entry.image, entry.digest), []).append(entry)
    rows = []
    for (image, digest), found in sorted(by_digest.items()):
        registry, _, repository = image.partition("/")
        rows.append(
            RunningDigest(
                registry=registry,
                repository=repository,
                digest=digest,
                namespaces=tuple(sorted({e.namespace for e in found})),
                pods=sum(e.pods for e in found),
                first_seen=min(e.first_seen for e in found),
                last_seen=max(e.last_seen for e in found),
                tags=protecting_tags(ledger_of(image, digest)),
            )
        )
    return rows


def as_json(row: RunningDigest) -> dict[str, object]:
    return {
        "registry": row.registry,
        "repository": row.repository,
        "digest": row.digest,
        "namespaces": list(row.namespaces),
        "pods": row.pods,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "tags": list(row.tags),
    }


def as_cells(row: RunningDigest, when: Callable[[float], str]) -> list[str]:
    return [
        row.registry,
        row.repository,
        f"{row.digest[:19]}…",
        ",".join(row.namespaces),
        str(row.pods),
        when(row.first_seen),
        when(row.last_seen),
        ", ".join(row.tags) or "-",
    ]


HEADER = [
    "REGISTRY",
    "REPOSITORY",
    "DIGEST",
    "NAMESPACES",
    "PODS",
    "FIRST SEEN (UTC)",
    "LAST SEEN (UTC)",
    "TAGS",
]
