"""Is this digest already tagged for this scope? The ledger's answer, one pure decision over its entries
(`ledger_tag`) used by the tagger and by the catch-up pass."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from listener.plan import TagPlan
from pulltag.store import LedgerEntry, Store, StoreError

log = logging.getLogger(__name__)

# Outcomes that mean "the digest has its tag"; a dry run also counts its own "dry-run" entries.
TAGGED = frozenset({"created", "exists"})
# Outcomes after which the tag no longer sits on the digest (retention released it, or it was moved).
GONE = frozenset({"released", "moved"})
LEDGER_LOOKUP_LIMIT = 200


def ledger_tag(entries: Iterable[LedgerEntry], plan_: TagPlan, *, dry_run: bool) -> str | None:
    """Among ledger `entries` of the plan's digest, the tag that already serves the plan's scope, or
    None. Scope image or namespace: any tag with the plan's `skip_prefix`. Scope "every" (no prefix): a
    tag of this very container of this pod. Only successes count ("dry-run" ones too in a dry run)."""
    wanted = TAGGED | {"dry-run"} if dry_run else TAGGED
    gone: set[str] = set()
    for entry in entries:  # newest first: a release is met before the creation it undoes
        if entry.outcome in GONE:
            gone.add(entry.tag)
        if entry.outcome not in wanted or entry.tag in gone:
            continue
        if plan_.skip_prefix is not None:
            if entry.tag.startswith(plan_.skip_prefix):
                return entry.tag
        elif (entry.namespace, entry.pod, entry.container) == (plan_.namespace, plan_.pod, plan_.container):
            return entry.tag
    return None


def tagged_per_ledger(store: Store, plan_: TagPlan, *, dry_run: bool) -> str | None:
    """`ledger_tag` over the store's entries for the plan's digest; None when the store cannot say (the
    ledger only saves a registry request, or a catch-up job the tagger then skips)."""
    # Scope "every" asks for this pod's entries, not the digest's newest: a DaemonSet has hundreds.
    every = plan_.skip_prefix is None
    try:
        entries = store.query_ledger(
            image=plan_.image_name,
            digest=plan_.digest,
            namespace=plan_.namespace if every else None,
            pod=plan_.pod if every else None,
            limit=LEDGER_LOOKUP_LIMIT,
        )
    except StoreError as exc:
        log.warning("ledger lookup for %s failed (%s)", plan_.dedup_key, exc)
        return None
    return ledger_tag(entries, plan_, dry_run=dry_run)
