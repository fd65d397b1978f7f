"""Planning (flow step 5): what tag, on which digest, in which registry, deduplicated how. Pure.

The tag name depends only on the event (its pull time, pod, container, node) and the settings, never on
the clock of the listener that handles it, so every replica renders the same name for the same pull.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from listener.confirm import Confirmed
from listener.pulls import seen_key
from pulltag.config import NamespaceSettings, Settings, TaggingSettings, canonical_host
from pulltag.contract import IGNORE_LABEL, opted_out
from pulltag.images import is_valid_tag

__all__ = [
    "MAX_TAG_LENGTH",
    "Skip",
    "TagPlan",
    "fallback_tag",
    "namespace_selected",
    "plan",
    "render_tag",
    "sanitize_tag",
]

MAX_TAG_LENGTH = 128
# Everything the OCI tag grammar allows after the first character; the rest becomes "-".
_TAG_CHAR_RE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class TagPlan:
    """One tag to create. `skip_prefix`: do nothing if a tag starting with it already sits on the digest
    (None: always tag). `dedup_key`: equal keys are the same work and are done once."""

    registry: str  # the host as configured
    repository: str
    digest: str
    tag: str
    skip_prefix: str | None
    dedup_key: str
    namespace: str
    pod: str
    container: str
    node: str
    pulled_at: float  # unix seconds
    image_name: str  # registry/repository


@dataclass(frozen=True)
class Skip:
    """Nothing to tag; `reason` is short and stable (a metric label), `detail` is for the log."""

    reason: str
    detail: str = ""


def plan(
    confirmed: Confirmed,
    settings: Settings,
    *,
    pod_labels: Mapping[str, str] | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> TagPlan | Skip:
    """The tag to create for a confirmed pull, or why none."""
    pull = confirmed.pull
    registry = settings.registry_for(confirmed.registry)
    if registry is None:
        return Skip("unconfigured_registry", confirmed.registry)
    if not namespace_selected(pull.namespace, settings.namespaces):
        return Skip("filtered", f"namespace {pull.namespace}")
    if opted_out(pod_labels) or opted_out(namespace_labels):
        return Skip("filtered", f"label {IGNORE_LABEL}")
    try:
        tag = render_tag(
            settings.tagging,
            namespace=pull.namespace,
            pod=pull.pod_name,
            container=pull.container,
            node=pull.node,
            when=pull.pulled_at,
        )
    except (KeyError, IndexError, ValueError, OverflowError) as err:
        # A template the loader would have refused, or a pull time outside what datetime can convert.
        return Skip("invalid_tag", f"cannot render: {err!r}")
    if not is_valid_tag(tag):
        return Skip("invalid_tag", tag)
    skip_prefix, scope_key = _scope(settings.tagging, confirmed)
    return TagPlan(
        registry=registry.host,
        repository=confirmed.repository,
        digest=confirmed.digest,
        tag=tag,
        skip_prefix=skip_prefix,
        # The canonical host, so that aliases of one registry share keys.
        dedup_key=f"{canonical_host(registry.host)}/{confirmed.repository}@{confirmed.digest}|{scope_key}",
        namespace=pull.namespace,
        pod=pull.pod_name,
        container=pull.container,
        node=pull.node,
        pulled_at=pull.pulled_at.timestamp(),
        image_name=f"{registry.host}/{confirmed.repository}",
    )


def _scope(tagging: TaggingSettings, confirmed: Confirmed) -> tuple[str | None, str]:
    """(skip_prefix, scope key) for the configured scope."""
    if tagging.scope == "namespace":
        namespace = confirmed.pull.namespace
        return f"{tagging.prefix}_{namespace}_", namespace
    if tagging.scope == "every":
        # Each occurrence of each pull event is its own work item, and nothing is skipped.
        return None, seen_key(confirmed.pull)
    # "image", the original program's behaviour: one tag with the prefix per digest, whatever namespace.
    return f"{tagging.prefix}_", ""


def namespace_selected(namespace: str, namespaces: NamespaceSettings) -> bool:
    """Included by some include glob and by no exclude glob (exclude wins). Case-sensitive, like names."""
    if any(fnmatchcase(namespace, pattern) for pattern in namespaces.exclude):
        return False
    return any(fnmatchcase(namespace, pattern) for pattern in namespaces.include)


def render_tag(
    tagging: TaggingSettings, *, namespace: str, pod: str, container: str, node: str, when: datetime
) -> str:
    """The template rendered and sanitised toward the OCI tag grammar. The result can still break the
    grammar (an empty or "-"-led name); callers check it with `is_valid_tag`.

    `when` is shown in the configured time zone; a naive `when` is taken as UTC.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    rendered = tagging.template.format(
        prefix=tagging.prefix,
        namespace=namespace,
        timestamp=when.astimezone(tagging.zone).strftime(tagging.timestamp_format),
        cluster=tagging.cluster,
        pod=pod,
        container=container,
        node=node,
    )
    return sanitize_tag(rendered)


def fallback_tag(tag: str, digest: str) -> str:
    """The name to use when `tag` already sits on another digest of the repository: `tag` plus `_` and
    the first 12 hex digits of `digest`, cut to fit 128 characters.

    The default template names a tag by namespace and second, so two digests of one repository pulled in
    the same second (two containers running `web:1` and `web:2`) render the same name. Tags are never
    moved; the second digest gets this name instead. It depends only on the plan, so replicas agree.
    """
    hex_part = digest.partition(":")[2] or digest
    suffix = "_" + _TAG_CHAR_RE.sub("-", hex_part[:12])
    return tag[: MAX_TAG_LENGTH - len(suffix)] + suffix


def sanitize_tag(text: str) -> str:
    """Each character the grammar refuses becomes "-", then the text is cut to 128 characters."""
    return _TAG_CHAR_RE.sub("-", text)[:MAX_TAG_LENGTH]
