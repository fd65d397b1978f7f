"""Settings: one frozen dataclass, read in one place (`load_settings`).

Every key is optional and has the default documented in DESIGN.md and the README. A bad file, key or
value raises `ConfigError` whose message is one line naming the key; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pulltag.config_reading import (
    ConfigError as ConfigError,
)
from pulltag.config_reading import (
    check_keys,
    expect_mapping,
    read_fields,
    read_section,
    type_name,
)

# Re-exported: the listener matched hosts through config before images.py owned the one rule.
from pulltag.images import canonical_host as canonical_host

ENV_CONFIG = "PULLTAG_CONFIG"
ENV_STORE_URL = "PULLTAG_STORE_URL"

DEFAULT_STORE_URL = "sqlite:///var/lib/pulltag/pulltag.db"
TEMPLATE_VARIABLES = frozenset({"prefix", "namespace", "timestamp", "cluster", "pod", "container", "node"})

# The OCI distribution tag grammar; a rendered tag must match it, so the prefix must too.
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# host or host:port, as distribution's reference grammar reads a domain (IPv6 in brackets allowed).
_HOST_RE = re.compile(
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)

Scope = Literal["image", "namespace", "every"]
RegistryType = Literal["harbor", "oci"]


@dataclass(frozen=True)
class StoreSettings:
    url: str = DEFAULT_STORE_URL
    timeout_seconds: float = 2.0
    admission_ttl_seconds: int = 24 * 3600
    ledger_max_entries: int = 100_000


@dataclass(frozen=True)
class TaggingSettings:
    prefix: str = "deployed"
    template: str = "{prefix}_{namespace}_{timestamp}"
    timestamp_format: str = "%Y%m%d-%H%M%S"
    timezone: str = "UTC"
    scope: Scope = "image"
    cluster: str = ""
    # Also tag running containers of pods never admitted (started before install, or while the webhook
    # was down), from the kubelet-written imageID of their status.
    backfill: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class NamespaceSettings:
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ("kube-system",)


@dataclass(frozen=True)
class RegistrySettings:
    host: str
    type: RegistryType = "oci"
    credentials: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


@dataclass(frozen=True)
class WebhookSettings:
    store_budget_seconds: float = 0.3
    max_body_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class ListenerSettings:
    workers: int = 4
    imageid_wait_seconds: float = 60.0
    reconcile_interval_seconds: float = 6 * 3600.0
    max_attempts: int = 5
    rate_limit_per_second: float = 10.0
    dry_run: bool = False
    # A watch that sends nothing (not even a bookmark) for this long is taken as dead and reopened.
    watch_read_timeout_seconds: float = 90.0
    watch_backoff_max_seconds: float = 30.0
    lease_duration_seconds: float = 15.0
    # A listener killed mid-tag leaves its claims behind: another one takes their keys over after this.
    claim_ttl_seconds: float = 60.0
    # A tag that still failed after max_attempts (registry down for longer than the retries) is tried
    # again by a catch-up pass this long after; until then it is `failed` in the ledger and the metrics.
    failed_retry_seconds: float = 300.0
    # The catch-up pass (at start, then every reconcile_interval_seconds); off only in tests of the event
    # path, which must not pass thanks to it.
    catch_up: bool = True
    # A key claimed by another worker is looked at again after this (its done marker, or the claim free).
    claim_recheck_seconds: float = 2.0
    # Backoff of a tag's transient failures (and of waiting for the store), from initial up to max.
    tag_retry_initial_seconds: float = 1.0
    tag_retry_max_seconds: float = 60.0
    # Backoff of a confirmation waiting for the pod's imageID or for the API server.
    confirm_retry_initial_seconds: float = 0.5
    confirm_retry_max_seconds: float = 5.0
    # How long a confirmation keeps trying when the API server (not the kubelet) is the problem.
    api_patience_seconds: float = 300.0
    watch_backoff_initial_seconds: float = 0.5
    # A watch that delivered nothing and lasted less than this counts as a failure (no hot loop).
    watch_healthy_stream_seconds: float = 1.0
    # How often the leader lists running pods to refresh the inventory of running digests.
    inventory_interval_seconds: float = 600.0


@dataclass(frozen=True)
class RetentionSettings:
    """Release of pulltag's own tags that no longer protect anything (README "Protecting what runs")."""

    enabled: bool = False
    # Per repository and namespace, the newest N deployed digests keep their tags.
    keep_last: int = 5
    # A digest keeps its tags this long after it was last seen running (rollback, scale from zero).
    grace_hours: float = 168.0
    # A tag younger than this is never released.
    min_age_hours: float = 24.0
    # How often the leader runs a release pass.
    interval_seconds: float = 3600.0


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = field(default_factory=StoreSettings)
    tagging: TaggingSettings = field(default_factory=TaggingSettings)
    namespaces: NamespaceSettings = field(default_factory=NamespaceSettings)
    registries: tuple[RegistrySettings, ...] = ()
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)

    def registry_for(self, host: str) -> RegistrySettings | None:
        """The configured registry for an image's registry host (`pulltag.images.canonical_host`)."""
        for registry in self.registries:
            if canonical_host(host, plain_http=registry.insecure) == _canonical(registry):
                return registry
        return None


def _canonical(registry: RegistrySettings) -> str:
    return canonical_host(registry.host, plain_http=registry.insecure)


def validate_store_url(url: str, key: str = "store.url") -> str:
    if url.startswith("sqlite:///"):
        if len(url) <= len("sqlite:///"):
            raise ConfigError(key, "sqlite URL needs a path: sqlite:///path/file.db")
        return url
    if url.startswith(("redis://", "rediss://")):
        return url
    raise ConfigError(key, "must start with sqlite:///, redis:// or rediss://")


def _store(raw: object, environ: Mapping[str, str]) -> StoreSettings:
    store = read_section(StoreSettings, raw, "store")
    validate_store_url(store.url)
    url_override = environ.get(ENV_STORE_URL)
    if url_override:
        store = replace(store, url=validate_store_url(url_override, ENV_STORE_URL))
    return store


def template_fields(template: str) -> set[str]:
    """The variable names a template uses; raises ValueError on a malformed format string."""
    names: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{{{name}}} may not carry a format spec or conversion")
        names.add(name)
    return names


def _tagging(raw: object) -> TaggingSettings:
    tagging = read_section(TaggingSettings, raw, "tagging")
    if not _TAG_RE.fullmatch(tagging.prefix):
        raise ConfigError(
            "tagging.prefix", f"{tagging.prefix!r} breaks the OCI tag grammar [A-Za-z0-9_][A-Za-z0-9._-]*"
        )
    try:
        names = template_fields(tagging.template)
    except ValueError as exc:
        raise ConfigError("tagging.template", f"malformed template: {exc}") from None
    unknown = names - TEMPLATE_VARIABLES
    if unknown:
        known = ", ".join("{" + n + "}" for n in sorted(TEMPLATE_VARIABLES))
        raise ConfigError("tagging.template", f"unknown variable {{{sorted(unknown)[0]}}} (known: {known})")
    if not tagging.timestamp_format:
        raise ConfigError("tagging.timestamp_format", "must not be empty")
    try:
        ZoneInfo(tagging.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("tagging.timezone", f"unknown time zone {tagging.timezone!r}") from None
    if tagging.cluster and not re.fullmatch(r"[A-Za-z0-9._-]{1,63}", tagging.cluster):
        raise ConfigError("tagging.cluster", "may hold only letters, digits, '.', '_' and '-' (max 63)")
    _check_sample_tag(tagging)
    return tagging


def _check_sample_tag(tagging: TaggingSettings) -> None:
    """Render the template once with typical values: a template that can never give a valid tag is fatal."""
    from datetime import datetime

    sample = tagging.template.format(
        prefix=tagging.prefix,
        namespace="default",
        timestamp=datetime(2026, 11, 26, 10, 15, 2).strftime(tagging.timestamp_format),
        cluster=tagging.cluster or "cluster",
        pod="web-7d4b9c-x2x9q",
        container="app",
        node="node-1",
    )
    if not _TAG_RE.fullmatch(sample):
        raise ConfigError(
            "tagging.template", f"renders tags like {sample[:60]!r}, which break the OCI tag grammar"
        )


def _registry(raw: object, index: int) -> RegistrySettings:
    path = f"registries[{index}]"
    values = read_fields(RegistrySettings, raw, path)
    host = values.get("host")
    if not host:
        raise ConfigError(f"{path}.host", "is required: the registry host as it appears in image names")
    if not _HOST_RE.fullmatch(host):
        raise ConfigError(f"{path}.host", f"{host!r} is not a host or host:port (no scheme, no path)")
    return RegistrySettings(**values)


def _registries(raw: object) -> tuple[RegistrySettings, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("registries", f"must be a list, got {type_name(raw)}")
    registries = tuple(_registry(item, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, registry in enumerate(registries):
        host = _canonical(registry)
        if host in seen:
            raise ConfigError(f"registries[{i}].host", f"{registry.host!r} is configured twice")
        seen.add(host)
    return registries


def _zero_or_more(value: object, path: str, *, integer: bool) -> float | int:
    """A count or a duration where 0 means something (keep no extra digest, no grace, no minimum age)."""
    kinds: type | tuple[type, ...] = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = "an integer" if integer else "a number"
        raise ConfigError(path, f"must be {wanted}, got {type_name(value)}")
    assert isinstance(value, int | float)
    if value < 0:
        raise ConfigError(path, f"must be 0 or more, got {value}")
    return value if integer else float(value)


def _retention(raw: object) -> RetentionSettings:
    # keep_last, grace_hours and min_age_hours may be 0, which the generic readers refuse: they are read
    # here; `enabled` and `interval_seconds` (greater than 0) take the generic readers.
    section = dict(expect_mapping(raw, "retention"))
    zero_ok: dict[str, Any] = {
        key: _zero_or_more(section.pop(key), f"retention.{key}", integer=key == "keep_last")
        for key in ("keep_last", "grace_hours", "min_age_hours")
        if key in section
    }
    return RetentionSettings(**read_fields(RetentionSettings, section, "retention"), **zero_ok)


def check_registry_files(settings: Settings) -> None:
    """Each configured `ca_file` is a readable file; raises ConfigError naming the key otherwise.

    Only the commands that talk to registries call this (the webhook reads the same file but mounts no
    registry CA). A missing `credentials` file is not an error here: the Secret behind it may be created
    after the listener starts (it is re-read when it appears), and `registry check` names it."""
    for i, registry in enumerate(settings.registries):
        if registry.ca_file is None:
            continue
        try:
            Path(registry.ca_file).open("rb").close()
        except FileNotFoundError:
            raise ConfigError(f"registries[{i}].ca_file", f"no such file: {registry.ca_file}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"registries[{i}].ca_file", f"cannot read {registry.ca_file}: {reason}"
            ) from None


def settings_from_dict(raw: object, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from parsed YAML (None = empty file) and environment overrides."""
    top = expect_mapping(raw, "(top level)")
    check_keys(top, (f.name for f in fields(Settings)), "")
    return Settings(
        store=_store(top.get("store"), os.environ if env is None else env),
        tagging=_tagging(top.get("tagging")),
        namespaces=read_section(NamespaceSettings, top.get("namespaces"), "namespaces"),
        registries=_registries(top.get("registries")),
        webhook=read_section(WebhookSettings, top.get("webhook"), "webhook"),
        listener=read_section(ListenerSettings, top.get("listener"), "listener"),
        retention=_retention(top.get("retention")),
    )


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """The one place settings are read: `path`, else $PULLTAG_CONFIG, else all defaults."""
    environ = os.environ if env is None else env
    chosen = str(path) if path is not None else environ.get(ENV_CONFIG) or None
    raw: object = None
    if chosen is not None:
        try:
            text = Path(chosen).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {chosen}: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise ConfigError("--config", f"{chosen} is not valid YAML{line}") from None
    return settings_from_dict(raw, environ)
