"""HTTP for the registry clients: one Session each, bounded retries, and failures named by their cause.

Transient failures (5xx, 429, connection problems) are retried with backoff; every other status is
returned to the client, which knows what it means. A connection that fails says why: a certificate the
configured CA does not sign or that names another host (TLS, not retried), a name that did not resolve
(DNS), or refused / timed out.
"""

from __future__ import annotations

import base64
import email.utils
import http.cookiejar
import logging
import socket
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from listener.registry.errors import RateLimited, RegistryUnavailable, TransientError, describe_response
from listener.workqueue import backoff_delay
from pulltag.config import RegistrySettings

log = logging.getLogger("pulltag.registry")

USER_AGENT = "pulltag/0.1 (+https://pulltag.dev)"

RequestHook = Callable[[str, str, int | None], None]
Sleep = Callable[[float], None]


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
        """Delay before retry `retry_number` (0-based): the listener's one backoff rule."""
        return backoff_delay(retry_number, self.base_delay, self.max_delay)


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


def basic_auth_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


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


# ---------------------------------------------------------------------------------------------------
# Why a connection failed, in words a user can act on


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> ssl/socket), outermost first."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        item = pending.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        pending.extend([*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)])
    return seen


# OpenSSL's verify codes for a certificate that does not name the host (X509_V_ERR_HOSTNAME_MISMATCH,
# X509_V_ERR_IP_ADDRESS_MISMATCH); any other verify failure is a chain this client does not trust.
_NAME_MISMATCH = frozenset({62, 64})


def tls_problem(exc: BaseException, host: str) -> str:
    """What was wrong with the registry's certificate, and what to change."""
    for cause in _causes(exc):
        if not isinstance(cause, ssl.SSLCertVerificationError):
            continue
        if cause.verify_code in _NAME_MISMATCH:
            return (
                f"the certificate does not name {host} (name mismatch); configure the host name the "
                "certificate holds (ca_file only chooses the CA to trust)"
            )
        return (
            f"the certificate is signed by an unknown CA ({cause.verify_message}); set ca_file to the CA "
            "that signed it"
        )
    return "the TLS handshake failed; check ca_file and that the registry speaks TLS on this port"


def connection_problem(exc: BaseException, host: str) -> str:
    """Why a connection could not be made: the name did not resolve, refused, timed out..."""
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return f"the name {host} did not resolve (DNS)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    return type(exc).__name__


def _hostname(url: str) -> str:
    return urlsplit(url).hostname or url


# ---------------------------------------------------------------------------------------------------
# Sending


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

    def _where(self, what: str, repository: str) -> str:
        return f"{self.registry}: {what}" + (f" in repository {repository}" if repository else "")

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
    ) -> requests.Response:
        """Send with retries on 5xx/429/connection errors; any other status is returned as is."""
        proxies = requests.utils.get_environ_proxies(url)
        for attempt in range(self.retry.attempts):
            last = attempt + 1 == self.retry.attempts
            all_headers = {"X-Request-Id": str(uuid.uuid4()), **(headers or {})}
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=all_headers,
                    data=data,
                    json=json_body,
                    timeout=self.timeout,
                    allow_redirects=True,
                    proxies=proxies,
                )
            except requests.exceptions.SSLError as exc:
                self._count(method, url, None)
                # A certificate problem does not heal by retrying.
                problem = tls_problem(exc, _hostname(url))
                raise RegistryUnavailable(
                    f"{self._where(what, repository)}: TLS verification failed: {problem}",
                    registry=self.registry,
                    repository=repository,
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._count(method, url, None)
                problem = connection_problem(exc, _hostname(url))
                log.debug("%s %s failed (%s), attempt %d", method, url, problem, attempt + 1)
                if not last:
                    self.sleep(self.retry.backoff(attempt))
                    continue
                tries = self.retry.attempts
                raise RegistryUnavailable(
                    f"{self._where(what, repository)}: unreachable after {tries} attempts: {problem}",
                    registry=self.registry,
                    repository=repository,
                ) from None
            self._count(method, url, response.status_code)
            log.debug(
                "%s %s -> %d (X-Request-Id %s)", method, url, response.status_code, _request_id(response)
            )
            wait = self._retry_wait(response, attempt, what, repository)
            if wait is None:
                return response
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_wait(
        self, response: requests.Response, attempt: int, what: str, repository: str
    ) -> float | None:
        """How long to wait before trying again; None to return the response; raises once the retries
        are spent."""
        status = response.status_code
        if status != 429 and status not in RETRYABLE_STATUSES:
            return None
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        text, code = describe_response(response)
        if status == 429:
            if attempt + 1 < self.retry.attempts and (wait is None or wait <= self.retry.max_retry_after):
                return wait if wait is not None else self.retry.backoff(attempt)
            raise RateLimited(
                f"{self._where(what, repository)}: rate limited ({text})",
                retry_after=wait,
                registry=self.registry,
                repository=repository,
                code=code,
                request_id=_request_id(response),
            )
        if attempt + 1 < self.retry.attempts:
            return (
                wait
                if wait is not None and wait <= self.retry.max_retry_after
                else self.retry.backoff(attempt)
            )
        raise TransientError(
            f"{self._where(what, repository)}: server error after {self.retry.attempts} attempts ({text})",
            registry=self.registry,
            repository=repository,
            status=status,
            code=code,
            request_id=_request_id(response),
        )


def _request_id(response: requests.Response) -> str | None:
    """The id the registry logged the request under: its own, else the one we sent."""
    sent = response.request.headers.get("X-Request-Id") if response.request is not None else None
    return response.headers.get("X-Request-Id", sent)
