"""The registry interface, its results, and the HTTP plumbing both backends share.

A `RegistryClient` answers four questions about one registry host:

- `digest_of(repository, reference)`: the digest a tag (or digest) resolves to;
- `tags_on(repository, digest, prefix)`: tags starting with `prefix` that point at `digest`;
- `create_tag(repository, digest, tag)`: `Created` or `AlreadyThere`, never moving an existing tag
  (`TagConflict`);
- `check(repository=None)`: reachable and authenticated, and whether push is allowed when the
  protocol can tell.

Names are validated against the OCI grammar before anything is sent. Each client owns one
`requests.Session` with cookies disabled, counts the HTTP requests it sends (`requests_sent`, and
the optional `on_request` hook), and reports the duration of each operation to `observer`.
"""

from __future__ import annotations

import abc
import base64
import email.utils
import http.cookiejar
import json
import logging
import random
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import requests

from listener.registry.credentials import Keyring
from listener.registry.errors import (
    InvalidName,
    RateLimited,
    RegistryUnavailable,
    TransientError,
)
from pulltag.config import RegistrySettings
from pulltag.images import is_valid_digest, is_valid_repository, is_valid_tag

log = logging.getLogger("pulltag.registry")

MAX_REPOSITORY_LENGTH = 255
USER_AGENT = "pulltag/0.1 (+https://pulltag.dev)"

Observer = Callable[[str, float], None]
RequestHook = Callable[[str, str, int | None], None]
Sleep = Callable[[float], None]

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


# ---------------------------------------------------------------------------------------------------
# Retry policy


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for 5xx, 429 and connection errors.

    `attempts` counts every try (1 = no retry). A 429 waits for `Retry-After` when it is at most
    `max_retry_after`; longer waits are left to the caller (a `RateLimited` error carries it).
    """

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, retry_number: int) -> float:
        """Delay before retry `retry_number` (0-based): half fixed, half random ("equal jitter")."""
        cap = min(self.max_delay, self.base_delay * (2**retry_number))
        return float(cap / 2 + random.uniform(0, cap / 2))


RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ---------------------------------------------------------------------------------------------------
# Names


def check_repository(registry: str, repository: str) -> None:
    if (
        not isinstance(repository, str)
        or len(repository) > MAX_REPOSITORY_LENGTH
        or not is_valid_repository(repository)
    ):
        raise InvalidName(
            f"{registry}: invalid repository name {_shown(repository)} (OCI grammar); nothing was sent",
            registry=registry,
        )


def check_tag(registry: str, repository: str, tag: str) -> None:
    if not isinstance(tag, str) or not is_valid_tag(tag):
        raise InvalidName(
            f"{registry}: invalid tag {_shown(tag)} for repository {repository} (OCI grammar); "
            "nothing was sent",
            registry=registry,
            repository=repository,
        )


def check_digest(registry: str, repository: str, digest: str) -> None:
    if not isinstance(digest, str) or not is_valid_digest(digest):
        raise InvalidName(
            f"{registry}: invalid digest {_shown(digest)} for repository {repository}; nothing was sent",
            registry=registry,
            repository=repository,
        )


def check_prefix(registry: str, repository: str, prefix: str) -> None:
    # A prefix is a tag's beginning: empty, or itself a valid tag.
    if not isinstance(prefix, str) or (prefix and not is_valid_tag(prefix)):
        raise InvalidName(
            f"{registry}: invalid tag prefix {_shown(prefix)} for repository {repository}; nothing was sent",
            registry=registry,
            repository=repository,
        )


def check_reference(registry: str, repository: str, reference: str) -> None:
    if isinstance(reference, str) and ":" in reference:
        check_digest(registry, repository, reference)
    else:
        check_tag(registry, repository, reference)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------------
# Error bodies


def basic_auth_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_errors(response: requests.Response) -> list[tuple[str, str]]:
    """`{"errors": [{"code", "message"}]}` as (code, message) pairs; [] for anything else."""
    try:
        body = json.loads(response.content[:65536].decode("utf-8", "replace"))
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    result: list[tuple[str, str]] = []
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict):
                result.append((str(item.get("code") or ""), str(item.get("message") or "")))
    return result


def describe_response(response: requests.Response) -> tuple[str, str | None]:
    """A short, credential-free description of an error response, and its first error code."""
    errors = parse_errors(response)
    if errors:
        code, message = errors[0]
        text = f"HTTP {response.status_code} {code}: {message}".strip().rstrip(":")
        return _clip(text), code or None
    reason = response.reason or ""
    return f"HTTP {response.status_code} {reason}".strip(), None


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------
# HTTP


class _NoCookies(http.cookiejar.CookiePolicy):
    """Accept and return no cookie: Harbor enforces CSRF once its session cookie comes back."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: urllib.request.Request) -> bool:
        return False


def new_session(settings: RegistrySettings) -> requests.Session:
    session = requests.Session()
    session.cookies.set_policy(_NoCookies())
    # No ~/.netrc, no environment CA bundle overriding ours; proxies are added per request.
    session.trust_env = False
    session.verify = settings.ca_file if settings.ca_file else True
    session.headers["User-Agent"] = USER_AGENT
    return session


class HttpCore:
    """One Session, retries for transient failures, request counting and request ids."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        retry: RetryPolicy,
        on_request: RequestHook | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.settings = settings
        self.registry = settings.host
        self.retry = retry
        self.on_request = on_request
        self.sleep = sleep
        self.session = new_session(settings)
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self._lock = threading.Lock()
        self.requests_sent = 0

    def close(self) -> None:
        self.session.close()

    def _count(self, method: str, url: str, status: int | None) -> None:
        with self._lock:
            self.requests_sent += 1
        if self.on_request is not None:
            self.on_request(method, url, status)

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        repository: str = "",
        headers: Mapping[str, str] | None = None,
        data: bytes | Mapping[str, str] | None = None,
        json_body: Any = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        """Send with retries on 5xx/429/connection errors; any other status is returned as is."""
        proxies = requests.utils.get_environ_proxies(url)
        last_problem = ""
        for attempt in range(self.retry.attempts):
            request_id = str(uuid.uuid4())
            all_headers = {"X-Request-Id": request_id}
            if headers:
                all_headers.update(headers)
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=all_headers,
                    data=data,
                    json=json_body,
                    auth=auth,
                    timeout=self.timeout,
                    allow_redirects=True,
                    proxies=proxies,
                )
            except requests.exceptions.SSLError as exc:
                self._count(method, url, None)
                # A certificate problem does not heal by retrying.
                raise RegistryUnavailable(
                    f"{self.registry}: TLS verification failed for {what}"
                    + (f" in repository {repository}" if repository else "")
                    + f": {_clip(type(exc).__name__)}",
                    registry=self.registry,
                    repository=repository,
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._count(method, url, None)
                last_problem = type(exc).__name__
                log.debug("%s %s failed (%s), attempt %d", method, url, last_problem, attempt + 1)
                if attempt + 1 < self.retry.attempts:
                    self.sleep(self.retry.backoff(attempt))
                    continue
                raise RegistryUnavailable(
                    f"{self.registry}: unreachable for {what}"
                    + (f" in repository {repository}" if repository else "")
                    + f" after {self.retry.attempts} attempts ({last_problem})",
                    registry=self.registry,
                    repository=repository,
                ) from None
            elapsed = time.monotonic() - started
            self._count(method, url, response.status_code)
            server_id = response.headers.get("X-Request-Id", request_id)
            log.debug(
                "%s %s -> %d in %.3fs (X-Request-Id %s)",
                method,
                url,
                response.status_code,
                elapsed,
                server_id,
            )
            status = response.status_code
            if status == 429:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if attempt + 1 < self.retry.attempts and (wait is None or wait <= self.retry.max_retry_after):
                    self.sleep(wait if wait is not None else self.retry.backoff(attempt))
                    continue
                text, code = describe_response(response)
                raise RateLimited(
                    f"{self.registry}: rate limited during {what}"
                    + (f" in repository {repository}" if repository else "")
                    + f" ({text})",
                    retry_after=wait,
                    registry=self.registry,
                    repository=repository,
                    code=code,
                    request_id=server_id,
                )
            if status in RETRYABLE_STATUSES:
                if attempt + 1 < self.retry.attempts:
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                    if wait is None or wait > self.retry.max_retry_after:
                        wait = self.retry.backoff(attempt)
                    self.sleep(wait)
                    continue
                text, code = describe_response(response)
                raise TransientError(
                    f"{self.registry}: server error during {what}"
                    + (f" in repository {repository}" if repository else "")
                    + f" after {self.retry.attempts} attempts ({text})",
                    registry=self.registry,
                    repository=repository,
                    status=status,
                    code=code,
                    request_id=server_id,
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------
# The interface


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

    def check(self, repository: str | None = None) -> CheckResult:
        """Reachable and authenticated; with a repository, also whether push is allowed if knowable."""
        if repository is not None:
            check_repository(self.registry, repository)
        return self._timed("check", lambda: self._check(repository))

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
    def _check(self, repository: str | None) -> CheckResult: ...

    # -- helpers ------------------------------------------------------------------------------------

    def _timed(self, operation: str, call: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return call()
        finally:
            if self.observer is not None:
                try:
                    self.observer(operation, time.monotonic() - started)
                except Exception:  # an observer must never break tagging
                    log.exception("registry observer failed")
