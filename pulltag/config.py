"""Settings: one frozen dataclass, read in one place (`load_settings`).

Every key is optional and has the default documented in DESIGN.md and the README. A bad file, key or
value raises `ConfigError` whose message is one line naming the key; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

# Re-exported: the listener matched hosts through config before images.py owned the one rule.
from pulltag.images import canonical_host as canonical_host

ENV_CONFIG = "PULLTAG_CONFIG"
ENV_STORE_URL = "PULLTAG_STORE_URL"

DEFAULT_STORE_URL = "sqlite:///var/lib/pulltag/pulltag.db"
TEMPLATE_VARIABLES = frozenset({"prefix", "namespace", "timestamp", "cluster", "pod", "container", "node"})
SCOPES = ("image", "namespace", "every")
REGISTRY_TYPES = ("harbor", "oci")

# The OCI distribution tag grammar; a rendered tag must match it, so the prefix must too.
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# host or host:port, as distribution's reference grammar reads a domain (IPv6 in brackets allowed).
_HOST_RE = re.compile(
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)

Scope = Literal["image", "namespace", "every"]
RegistryType = Literal["harbor", "oci"]


class ConfigError(Exception):
    """A configuration problem; `str()` is one line naming the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        # Keys come from the user's file: escape anything that would break the one-line promise.
        key, reason = _one_line(key), _one_line(reason)
        super().__init__(f"config: {key}: {reason}")
        self.key = key
        self.reason = reason


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = field(default_factory=StoreSettings)
    tagging: TaggingSettings = field(default_factory=TaggingSettings)
    namespaces: NamespaceSettings = field(default_factory=NamespaceSettings)
    registries: tuple[RegistrySettings, ...] = ()
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    listener: ListenerSettings = field(default_factory=ListenerSettings)

    def registry_for(self, host: str) -> RegistrySettings | None:
        """The configured registry for an image's registry host (`pulltag.images.canonical_host`)."""
        for registry in self.registries:
            if canonical_host(host, plain_http=registry.insecure) == _canonical(registry):
                return registry
        return None


def _canonical(registry: RegistrySettings) -> str:
    return canonical_host(registry.host, plain_http=registry.insecure)


# ---------------------------------------------------------------------------------------------------
# Reading: each section is checked against its allowed keys and types before a dataclass is built.


def _expect_mapping(value: object, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {_type_name(value)}")
    for k in value:
        if not isinstance(k, str):
            raise ConfigError(key, f"keys must be strings, got {k!r}")
    return value


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_keys(section: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    for key in section:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"{prefix}{key}", f"unknown key (known: {known})")


def _str(section: Mapping[str, Any], key: str, default: str, path: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_type_name(value)}")
    return value


def _opt_str(section: Mapping[str, Any], key: str, path: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a non-empty string or null, got {_type_name(value)}")
    return value


def _bool(section: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_type_name(value)}")
    return value


def _number(section: Mapping[str, Any], key: str, default: float, path: str, minimum: float = 0.0) -> float:
    value = section.get(key, default)
    # bool is an int subclass in Python; `timeout: yes` is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number, got {_type_name(value)}")
    if value <= minimum:
        raise ConfigError(path, f"must be greater than {minimum:g}, got {value}")
    return float(value)


def _int(section: Mapping[str, Any], key: str, default: int, path: str, minimum: int = 1) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {_type_name(value)}")
    if value < minimum:
        raise ConfigError(path, f"must be at least {minimum}, got {value}")
    return value


def _globs(section: Mapping[str, Any], key: str, default: tuple[str, ...], path: str) -> tuple[str, ...]:
    value = section.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(path, "must be a list of non-empty strings")
    return tuple(value)


def validate_store_url(url: str, key: str = "store.url") -> str:
    if url.startswith("sqlite:///"):
        if len(url) <= len("sqlite:///"):
            raise ConfigError(key, "sqlite URL needs a path: sqlite:///path/file.db")
        return url
    if url.startswith(("redis://", "rediss://")):
        return url
    raise ConfigError(key, "must start with sqlite:///, redis:// or rediss://")


def _store(raw: object) -> StoreSettings:
    section = _expect_mapping(raw, "store")
    d = StoreSettings()
    _check_keys(section, {"url", "timeout_seconds", "admission_ttl_seconds", "ledger_max_entries"}, "store.")
    return StoreSettings(
        url=validate_store_url(_str(section, "url", d.url, "store.url")),
        timeout_seconds=_number(section, "timeout_seconds", d.timeout_seconds, "store.timeout_seconds"),
        admission_ttl_seconds=_int(
            section, "admission_ttl_seconds", d.admission_ttl_seconds, "store.admission_ttl_seconds"
        ),
        ledger_max_entries=_int(
            section, "ledger_max_entries", d.ledger_max_entries, "store.ledger_max_entries"
        ),
    )


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
    section = _expect_mapping(raw, "tagging")
    d = TaggingSettings()
    allowed = {"prefix", "template", "timestamp_format", "timezone", "scope", "cluster"}
    _check_keys(section, allowed, "tagging.")
    prefix = _str(section, "prefix", d.prefix, "tagging.prefix")
    if not _TAG_RE.fullmatch(prefix):
        raise ConfigError(
            "tagging.prefix", f"{prefix!r} breaks the OCI tag grammar [A-Za-z0-9_][A-Za-z0-9._-]*"
        )
    template = _str(section, "template", d.template, "tagging.template")
    try:
        names = template_fields(template)
    except ValueError as exc:
        raise ConfigError("tagging.template", f"malformed template: {exc}") from None
    unknown = names - TEMPLATE_VARIABLES
    if unknown:
        known = ", ".join("{" + n + "}" for n in sorted(TEMPLATE_VARIABLES))
        raise ConfigError("tagging.template", f"unknown variable {{{sorted(unknown)[0]}}} (known: {known})")
    ts_format = _str(section, "timestamp_format", d.timestamp_format, "tagging.timestamp_format")
    if not ts_format:
        raise ConfigError("tagging.timestamp_format", "must not be empty")
    timezone = _str(section, "timezone", d.timezone, "tagging.timezone")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("tagging.timezone", f"unknown time zone {timezone!r}") from None
    scope = _str(section, "scope", d.scope, "tagging.scope")
    if scope not in SCOPES:
        raise ConfigError("tagging.scope", f"must be one of image, namespace, every; got {scope!r}")
    cluster = _str(section, "cluster", d.cluster, "tagging.cluster")
    if cluster and not re.fullmatch(r"[A-Za-z0-9._-]{1,63}", cluster):
        raise ConfigError("tagging.cluster", "may hold only letters, digits, '.', '_' and '-' (max 63)")
    settings = TaggingSettings(prefix, template, ts_format, timezone, scope, cluster)  # type: ignore[arg-type]
    _check_sample_tag(settings)
    return settings


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


def _namespaces(raw: object) -> NamespaceSettings:
    section = _expect_mapping(raw, "namespaces")
    d = NamespaceSettings()
    _check_keys(section, {"include", "exclude"}, "namespaces.")
    return NamespaceSettings(
        include=_globs(section, "include", d.include, "namespaces.include"),
        exclude=_globs(section, "exclude", d.exclude, "namespaces.exclude"),
    )


def _registry(raw: object, index: int) -> RegistrySettings:
    path = f"registries[{index}]"
    section = _expect_mapping(raw, path)
    allowed = {"host", "type", "credentials", "ca_file", "insecure", "connect_timeout", "read_timeout"}
    _check_keys(section, allowed, f"{path}.")
    host = section.get("host")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{path}.host", "is required: the registry host as it appears in image names")
    if not _HOST_RE.fullmatch(host):
        raise ConfigError(f"{path}.host", f"{host!r} is not a host or host:port (no scheme, no path)")
    kind = _str(section, "type", "oci", f"{path}.type")
    if kind not in REGISTRY_TYPES:
        raise ConfigError(f"{path}.type", f"must be harbor or oci, got {kind!r}")
    d = RegistrySettings(host=host)
    return RegistrySettings(
        host=host,
        type=kind,  # type: ignore[arg-type]
        credentials=_opt_str(section, "credentials", f"{path}.credentials"),
        ca_file=_opt_str(section, "ca_file", f"{path}.ca_file"),
        insecure=_bool(section, "insecure", d.insecure, f"{path}.insecure"),
        connect_timeout=_number(section, "connect_timeout", d.connect_timeout, f"{path}.connect_timeout"),
        read_timeout=_number(section, "read_timeout", d.read_timeout, f"{path}.read_timeout"),
    )


def _registries(raw: object) -> tuple[RegistrySettings, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("registries", f"must be a list, got {_type_name(raw)}")
    registries = tuple(_registry(item, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, registry in enumerate(registries):
        host = _canonical(registry)
        if host in seen:
            raise ConfigError(f"registries[{i}].host", f"{registry.host!r} is configured twice")
        seen.add(host)
    return registries


def _webhook(raw: object) -> WebhookSettings:
    section = _expect_mapping(raw, "webhook")
    d = WebhookSettings()
    _check_keys(section, {"store_budget_seconds", "max_body_bytes"}, "webhook.")
    return WebhookSettings(
        store_budget_seconds=_number(
            section, "store_budget_seconds", d.store_budget_seconds, "webhook.store_budget_seconds"
        ),
        max_body_bytes=_int(section, "max_body_bytes", d.max_body_bytes, "webhook.max_body_bytes"),
    )


def _listener(raw: object) -> ListenerSettings:
    section = _expect_mapping(raw, "listener")
    d = ListenerSettings()
    allowed = {
        "workers",
        "imageid_wait_seconds",
        "reconcile_interval_seconds",
        "max_attempts",
        "rate_limit_per_second",
        "dry_run",
        "watch_read_timeout_seconds",
        "watch_backoff_max_seconds",
        "lease_duration_seconds",
        "claim_ttl_seconds",
        "failed_retry_seconds",
    }
    _check_keys(section, allowed, "listener.")
    return ListenerSettings(
        workers=_int(section, "workers", d.workers, "listener.workers"),
        imageid_wait_seconds=_number(
            section, "imageid_wait_seconds", d.imageid_wait_seconds, "listener.imageid_wait_seconds"
        ),
        reconcile_interval_seconds=_number(
            section,
            "reconcile_interval_seconds",
            d.reconcile_interval_seconds,
            "listener.reconcile_interval_seconds",
        ),
        max_attempts=_int(section, "max_attempts", d.max_attempts, "listener.max_attempts"),
        rate_limit_per_second=_number(
            section, "rate_limit_per_second", d.rate_limit_per_second, "listener.rate_limit_per_second"
        ),
        dry_run=_bool(section, "dry_run", d.dry_run, "listener.dry_run"),
        watch_read_timeout_seconds=_number(
            section,
            "watch_read_timeout_seconds",
            d.watch_read_timeout_seconds,
            "listener.watch_read_timeout_seconds",
        ),
        watch_backoff_max_seconds=_number(
            section,
            "watch_backoff_max_seconds",
            d.watch_backoff_max_seconds,
            "listener.watch_backoff_max_seconds",
        ),
        lease_duration_seconds=_number(
            section, "lease_duration_seconds", d.lease_duration_seconds, "listener.lease_duration_seconds"
        ),
        claim_ttl_seconds=_number(
            section, "claim_ttl_seconds", d.claim_ttl_seconds, "listener.claim_ttl_seconds"
        ),
        failed_retry_seconds=_number(
            section, "failed_retry_seconds", d.failed_retry_seconds, "listener.failed_retry_seconds"
        ),
    )


def settings_from_dict(raw: object, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from parsed YAML (None = empty file) and environment overrides."""
    top = _expect_mapping(raw, "(top level)")
    allowed = {"store", "tagging", "namespaces", "registries", "webhook", "listener"}
    for key in top:
        if key not in allowed:
            raise ConfigError(key, f"unknown key (known: {', '.join(sorted(allowed))})")
    store = _store(top.get("store"))
    environ = os.environ if env is None else env
    url_override = environ.get(ENV_STORE_URL)
    if url_override:
        store = StoreSettings(
            url=validate_store_url(url_override, ENV_STORE_URL),
            timeout_seconds=store.timeout_seconds,
            admission_ttl_seconds=store.admission_ttl_seconds,
            ledger_max_entries=store.ledger_max_entries,
        )
    return Settings(
        store=store,
        tagging=_tagging(top.get("tagging")),
        namespaces=_namespaces(top.get("namespaces")),
        registries=_registries(top.get("registries")),
        webhook=_webhook(top.get("webhook")),
        listener=_listener(top.get("listener")),
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
