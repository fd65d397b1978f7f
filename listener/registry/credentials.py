"""Registry credentials from a dockerconfigjson file, matched to hosts the way the kubelet does.

The file is a Kubernetes `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` (or the older
`.dockercfg` shape without `auths`). Keys are matched like `pkg/credentialprovider`'s keyring:

- a scheme and a leading `/v1/` or `/v2/` path are ignored; any other path must prefix the image path;
- keys are tried most specific first (reverse lexicographic order);
- ports must be equal; `*` globs apply per DNS label and the label counts must be equal;
- hosts are compared in their canonical form (`pulltag.images.canonical_host`: lower case, no `:443`,
  Docker Hub's aliases and `https://index.docker.io/v1/` are `docker.io`).

The file is re-read when it changes (inode, size or mtime, checked on each lookup), which follows the
symlink swap of a mounted Secret. Secrets never appear in a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from listener.registry.errors import PermanentError
from pulltag.images import canonical_host

log = logging.getLogger("pulltag.registry.credentials")


class CredentialsError(PermanentError):
    """The credentials file is missing or unreadable (its content is never quoted)."""


@dataclass(frozen=True)
class Credentials:
    """Basic credentials and/or an identity (refresh) token. The repr hides the secrets."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def has_basic(self) -> bool:
        return bool(self.username or self.password)

    def __repr__(self) -> str:
        return (
            f"Credentials(username={self.username!r}, password={'***' if self.password else ''!r}, "
            f"identity_token={'***' if self.identity_token else ''!r})"
        )

    __str__ = __repr__


class Keyring(Protocol):
    """Where a client's credentials come from."""

    @property
    def source(self) -> str:
        """What to name in a message (a file path), never a secret."""

    def lookup(self, host: str, repository: str = "") -> Credentials | None: ...

    def keys(self) -> list[str]:
        """The hosts (and paths) it holds credentials for, normalised; never a secret."""


# ---------------------------------------------------------------------------------------------------
# Matching (pkg/credentialprovider keyring semantics)


def _split_host_port(netloc: str) -> tuple[str, str]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end != -1:
            host, rest = netloc[: end + 1], netloc[end + 1 :]
            return host, rest[1:] if rest.startswith(":") else ""
    if netloc.count(":") == 1:
        host, _, port = netloc.partition(":")
        return host, port
    return netloc, ""


def normalize_key(key: str) -> str | None:
    """A config key as the keyring stores it: no scheme, no /v1/ or /v2/, host lower-cased."""
    key = key.strip()
    if not key:
        return None
    value = key if key.startswith(("http://", "https://")) else "https://" + key
    try:
        parsed = urlsplit(value)
    except ValueError:
        return None
    if not parsed.netloc:
        return None
    path = parsed.path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    netloc = canonical_host(parsed.netloc)
    if path and path != "/":
        return netloc + path
    return netloc


def key_matches(key: str, image: str) -> bool:
    """Whether a normalised key matches a schemeless image location `host[:port]/path`."""
    glob = urlsplit("https://" + key)
    target = urlsplit("https://" + image)
    glob_host, glob_port = _split_host_port(glob.netloc)
    target_host, target_port = _split_host_port(target.netloc)
    if glob_port != target_port:
        return False
    glob_labels = glob_host.split(".")
    target_labels = target_host.split(".")
    if len(glob_labels) != len(target_labels):
        return False
    for pattern, label in zip(glob_labels, target_labels, strict=True):
        if not fnmatch.fnmatchcase(label, pattern):
            return False
    return target.path.startswith(glob.path)


def image_location(host: str, repository: str = "") -> str:
    location = canonical_host(host)
    return f"{location}/{repository}" if repository else location


# ---------------------------------------------------------------------------------------------------
# Parsing


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def _entry_credentials(entry: Mapping[str, Any]) -> Credentials | None:
    username, password = _text(entry, "username"), _text(entry, "password")
    identity = _text(entry, "identitytoken")
    auth = _text(entry, "auth")
    if auth:
        # As the kubelet does: `auth` (base64 of user:password) wins over username/password.
        try:
            decoded = base64.b64decode(auth, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if ":" in decoded:
            username, _, password = decoded.partition(":")
    if not (username or password or identity):
        return None
    return Credentials(username=username, password=password, identity_token=identity)


def parse_docker_config(document: Any) -> list[tuple[str, Credentials]]:
    """(normalised key, credentials) pairs from a dockerconfigjson or dockercfg document."""
    if not isinstance(document, Mapping):
        raise ValueError("the document is not a JSON object")
    auths = document.get("auths", document)  # dockerconfigjson, or the older dockercfg shape
    if not isinstance(auths, Mapping):
        raise ValueError("`auths` is not a JSON object")
    pairs: list[tuple[str, Credentials]] = []
    for raw_key, entry in auths.items():
        if not isinstance(raw_key, str) or not isinstance(entry, Mapping):
            continue
        key = normalize_key(raw_key)
        creds = _entry_credentials(entry)
        if key is not None and creds is not None:
            pairs.append((key, creds))
    return pairs


class _Index:
    def __init__(self, pairs: Iterable[tuple[str, Credentials]]) -> None:
        self.creds: dict[str, list[Credentials]] = {}
        for key, creds in pairs:
            self.creds.setdefault(key, []).append(creds)
        # Most specific first, as the kubelet sorts its index.
        self.keys = sorted(self.creds, reverse=True)

    def lookup_all(self, location: str) -> list[Credentials]:
        found: list[Credentials] = []
        for key in self.keys:
            if key_matches(key, location):
                found.extend(self.creds[key])
        return found


# Set by the chart and manifests/ to the Secret mounted (optional) over the credentials file, so that a
# missing Secret is named where the missing file is reported (`pulltag registry check`, tag failures).
ENV_CREDENTIALS_SECRET = "PULLTAG_CREDENTIALS_SECRET"


def _secret_hint(exc: OSError) -> str:
    secret = os.environ.get(ENV_CREDENTIALS_SECRET, "")
    if not secret or not isinstance(exc, FileNotFoundError):
        return ""
    return (
        f" (the Secret {secret} is missing or has no key .dockerconfigjson: create it with"
        f" `kubectl create secret docker-registry {secret} ...`)"
    )


class DockerConfigKeyring:
    """Credentials from a dockerconfigjson file, re-read when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._index: _Index | None = None

    def __repr__(self) -> str:
        return f"DockerConfigKeyring(path={str(self.path)!r})"

    def _current(self) -> _Index:
        try:
            st = os.stat(self.path)  # follows the ..data symlink of a mounted Secret
        except OSError as exc:
            if self._index is not None:
                log.warning(
                    "credentials file %s unreadable (%s); keeping the last good copy", self.path, exc.strerror
                )
                return self._index
            raise CredentialsError(
                f"credentials file {self.path} cannot be read: {exc.strerror}{_secret_hint(exc)}"
            ) from None
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._index is not None and stamp == self._stamp:
                return self._index
            try:
                document = json.loads(self.path.read_bytes())
                index = _Index(parse_docker_config(document))
            except (OSError, ValueError) as exc:
                problem = exc.strerror if isinstance(exc, OSError) else "not a valid dockerconfigjson"
                if self._index is not None:
                    log.warning("credentials file %s: %s; keeping the last good copy", self.path, problem)
                    return self._index
                raise CredentialsError(f"credentials file {self.path}: {problem}") from None
            if self._index is not None:
                log.info("credentials file %s changed; re-read", self.path)
            self._index, self._stamp = index, stamp
            return index

    @property
    def source(self) -> str:
        return f"credentials file {self.path}"

    def keys(self) -> list[str]:
        return sorted(self._current().keys)

    def lookup_all(self, host: str, repository: str = "") -> list[Credentials]:
        """Every matching entry, most specific key first."""
        return self._current().lookup_all(image_location(host, repository))

    def lookup(self, host: str, repository: str = "") -> Credentials | None:
        found = self.lookup_all(host, repository)
        return found[0] if found else None
