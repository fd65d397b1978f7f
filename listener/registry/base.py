"""The registry interface and its results.

A `RegistryClient` answers four questions about one registry host, and releases its tags:

- `digest_of(repository, reference)`: the digest a tag (or digest) resolves to;
- `tags_on(repository, digest, prefix)`: tags starting with `prefix` that point at `digest`;
- `create_tag(repository, digest, tag)`: `Created` or `AlreadyThere`, never moving an existing tag
  (`TagConflict`);
- `delete_tag(repository, tag, digest)`: remove `tag` only while it still points at `digest`, by tag only
  (never by digest: that would delete the image and every tag on it);
- `check(repository=None)`: reachable and authenticated, and whether push is allowed when the
  protocol can tell.

Names are validated against the OCI grammar before anything is sent (`names`). Each client sends
through one `transport.HttpCore` (one `requests.Session`, retries, request counting and the optional
`on_request` hook) and reports how long each operation took to its one `observer`.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import requests

from listener.registry.credentials import Credentials, Keyring
from listener.registry.errors import AuthenticationFailed, PermanentError, refused
from listener.registry.names import check_digest, check_prefix, check_reference, check_repository, check_tag
from listener.registry.transport import HttpCore, RequestHook, RetryPolicy, Sleep
from pulltag.config import RegistrySettings

log = logging.getLogger("pulltag.registry")

# The one place registry timings go: (registry host as configured, operation, seconds). Operations are
# `digest_of`, `tags_on`, `create_tag`, `delete_tag` and `check`; token requests and retries are inside them.
Observer = Callable[[str, str, float], None]

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Created:
    """The tag was created on the digest."""

    repository: str
    tag: str
    digest: str
    created: Literal[True] = True


@dataclass(frozen=True)
class AlreadyThere:
    """The tag already pointed at the digest; nothing was changed."""

    repository: str
    tag: str
    digest: str
    created: Literal[False] = False


TagResult = Created | AlreadyThere

# What `delete_tag` did: "released" (deleted), or why nothing was deleted: "moved" (the tag points at
# another digest), "absent" (no such tag), "unsupported" (the registry refuses deleting a tag by its name),
# "immutable" (an immutability rule protects it).
DeleteOutcome = Literal["released", "unsupported", "moved", "immutable", "absent"]
DELETE_OUTCOMES: tuple[DeleteOutcome, ...] = ("released", "unsupported", "moved", "immutable", "absent")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of `check()`: the registry answered and accepted our credentials (or anonymity).

    `authenticated` is True when credentials were sent and accepted, False when the registry let us
    in anonymously. `can_push` is True/False when the protocol lets us know, None when it does not.
    """

    registry: str
    authenticated: bool
    can_push: bool | None
    detail: str = ""


class RegistryClient(abc.ABC):
    """Base of the OCI and Harbor clients: validation and timing around the backend's operations."""

    kind: str = ""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        keyring: Keyring | None = None,
        retry: RetryPolicy | None = None,
        observer: Observer | None = None,
        on_request: RequestHook | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.settings = settings
        self.registry = settings.host
        self.keyring = keyring
        self.observer = observer
        self.http = HttpCore(settings, retry=retry or RetryPolicy(), on_request=on_request, sleep=sleep)

    # -- counting -----------------------------------------------------------------------------------

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent by this client so far (token requests and retries included)."""
        return self.http.requests_sent

    # -- public operations --------------------------------------------------------------------------

    def digest_of(self, repository: str, reference: str) -> str:
        """The digest that `reference` (a tag or a digest) resolves to in `repository`."""
        check_repository(self.registry, repository)
        check_reference(self.registry, repository, reference)
        return self._timed("digest_of", lambda: self._digest_of(repository, reference))

    def tags_on(self, repository: str, digest: str, prefix: str = "") -> list[str]:
        """Tags of `repository` starting with `prefix` that point at `digest` (sorted)."""
        check_repository(self.registry, repository)
        check_digest(self.registry, repository, digest)
        check_prefix(self.registry, repository, prefix)
        return self._timed("tags_on", lambda: sorted(set(self._tags_on(repository, digest, prefix))))

    def create_tag(self, repository: str, digest: str, tag: str) -> TagResult:
        """Point the new `tag` at `digest`; `AlreadyThere` if it already does, `TagConflict` if it
        points elsewhere (the tag is never moved)."""
        check_repository(self.registry, repository)
        check_digest(self.registry, repository, digest)
        check_tag(self.registry, repository, tag)
        return self._timed("create_tag", lambda: self._create_tag(repository, digest, tag))

    def delete_tag(self, repository: str, tag: str, digest: str) -> DeleteOutcome:
        """Delete `tag` only while it still points at `digest`: "moved" if it points elsewhere (nothing
        deleted), "absent" if the tag is gone, "unsupported" if the registry refuses tag deletion
        (distribution 2.8), "immutable" (Harbor 412), "released" when deleted. Any other failure raises the
        usual typed errors (transient ones retried by the caller). Never deletes by digest: the tag is
        checked against the tag grammar, which has no ':', so it can never name a digest."""
        check_repository(self.registry, repository)
        check_tag(self.registry, repository, tag)
        check_digest(self.registry, repository, digest)
        return self._timed("delete_tag", lambda: self._delete_tag(repository, tag, digest))

    def check(self, repository: str | None = None) -> CheckResult:
        """Reachable and authenticated; with a repository, also whether push is allowed if knowable.

        Credentials configured but none for this host is a failure, not anonymous access: the tags
        would be refused later, with a less helpful answer.
        """
        if repository is not None:
            check_repository(self.registry, repository)
        if self.keyring is not None and self.credentials(repository or "") is None:
            raise self.no_matching_credentials(repository or "")
        return self._timed("check", lambda: self._check(repository))

    def credentials(self, repository: str) -> Credentials | None:
        """The configured credentials for this registry (and repository), if any match."""
        return None if self.keyring is None else self.keyring.lookup(self.registry, repository)

    def no_matching_credentials(self, repository: str) -> AuthenticationFailed:
        """Credentials are configured, but no entry matches this host: say which entries there are."""
        assert self.keyring is not None
        keys = self.keyring.keys()
        held = f"it holds entries for {', '.join(keys)}" if keys else "it holds no usable entry"
        return AuthenticationFailed(
            f"{self.registry}: no credential matches host {self.registry}"
            + (f" and repository {repository}" if repository else "")
            + f" in {self.keyring.source}; {held}",
            registry=self.registry,
            repository=repository,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(registry={self.registry!r})"

    # -- backends -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def _digest_of(self, repository: str, reference: str) -> str: ...

    @abc.abstractmethod
    def _tags_on(self, repository: str, digest: str, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def _create_tag(self, repository: str, digest: str, tag: str) -> TagResult: ...

    @abc.abstractmethod
    def _delete_tag(self, repository: str, tag: str, digest: str) -> DeleteOutcome: ...

    @abc.abstractmethod
    def _check(self, repository: str | None) -> CheckResult: ...

    # -- helpers ------------------------------------------------------------------------------------

    def _failure(self, response: requests.Response, what: str, repository: str) -> PermanentError:
        """The typed error for a response that refused `what` (one mapping for every backend)."""
        return refused(response, registry=self.registry, what=what, repository=repository)

    def _timed(self, operation: str, call: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return call()
        finally:
            if self.observer is not None:
                try:
                    self.observer(self.registry, operation, time.monotonic() - started)
                except Exception:  # an observer must never break tagging
                    log.exception("registry observer failed")
