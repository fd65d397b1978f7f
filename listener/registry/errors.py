"""Typed registry errors.

Every error says which registry, which repository and what was refused; none ever carries a
credential (messages are built from names only, never from headers or request bodies).
`transient` tells the caller whether retrying later may help.
"""

from __future__ import annotations

import json

import requests

from pulltag.logs import clip


class RegistryError(Exception):
    """Base of all registry errors."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        registry: str = "",
        repository: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.registry = registry
        self.repository = repository
        self.status = status
        self.code = code
        self.request_id = request_id


class PermanentError(RegistryError):
    """Retrying will not help: not found, refused, invalid input, policy."""

    transient = False


class TransientError(RegistryError):
    """Retrying later may help: 5xx, 429, connection problems."""

    transient = True


class RegistryUnavailable(TransientError):
    """The registry could not be reached (connection refused, timeout, TLS handshake failure...)."""


class RateLimited(TransientError):
    """429 Too Many Requests after the retry budget was spent."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        registry: str = "",
        repository: str = "",
        status: int | None = 429,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, registry=registry, repository=repository, status=status, code=code, request_id=request_id
        )
        self.retry_after = retry_after


class AuthenticationFailed(PermanentError):
    """The registry (or its token server) rejected the credentials, or demanded some and had none."""


class PermissionDenied(PermanentError):
    """Authenticated, but not allowed to do this (403, insufficient scope, robot without push)."""


class NotFound(PermanentError):
    """Repository, manifest or artifact unknown."""


class InvalidName(PermanentError, ValueError):
    """A repository, tag or digest that does not match the OCI grammar; nothing was sent."""


class DigestMismatch(PermanentError):
    """The registry served content whose digest differs from the one asked for."""


class PolicyRefused(PermanentError):
    """A registry policy refused the operation (Harbor: proxy-cache project 405, immutable tag 412)."""


class TagConflict(PermanentError):
    """The tag already exists and points at another digest; it was not moved."""

    def __init__(
        self,
        message: str,
        *,
        tag: str,
        wanted: str,
        existing: str,
        registry: str = "",
        repository: str = "",
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, registry=registry, repository=repository, request_id=request_id)
        self.tag = tag
        self.wanted = wanted
        self.existing = existing


# ---------------------------------------------------------------------------------------------------
# From a refused response to a typed error: one mapping for both clients.

# What a status means for a registry request, said once for the OCI and the Harbor client.
_REFUSALS: dict[int, tuple[type[PermanentError], str]] = {
    401: (AuthenticationFailed, "the registry rejected the configured credentials (or needs some)"),
    403: (
        PermissionDenied,
        "the account lacks the permission (a robot account needs push / create-tag rights)",
    ),
    404: (NotFound, "not found"),
    405: (PolicyRefused, "the operation is not allowed here (Harbor: a proxy-cache project allows no tags)"),
    412: (PolicyRefused, "an immutability rule protects this tag"),
}


def parse_errors(response: requests.Response) -> list[tuple[str, str]]:
    """`{"errors": [{"code", "message"}]}` as (code, message) pairs; [] for anything else."""
    try:
        body = json.loads(response.content[:65536].decode("utf-8", "replace"))
    except (ValueError, UnicodeDecodeError):
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [(str(e.get("code") or ""), str(e.get("message") or "")) for e in errors if isinstance(e, dict)]


def describe_response(response: requests.Response) -> tuple[str, str | None]:
    """A short, credential-free description of an error response, and its first error code."""
    errors = parse_errors(response)
    if errors:
        code, message = errors[0]
        text = f"HTTP {response.status_code} {code}: {message}".strip().rstrip(":")
        return clip(text), code or None
    reason = response.reason or ""
    return f"HTTP {response.status_code} {reason}".strip(), None


def refused(response: requests.Response, *, registry: str, what: str, repository: str) -> PermanentError:
    """The typed error for a response that refused `what`: the class and the explanation by status, the
    registry's own error text, and the request id to find it in the registry's logs."""
    text, code = describe_response(response)
    status = response.status_code
    error_cls, explanation = _REFUSALS.get(status, (PermanentError, ""))
    where = f" in repository {repository}" if repository else ""
    because = f": {explanation}" if explanation else ""
    request_id = response.headers.get("X-Request-Id")
    message = f"{registry}: {what} refused{where}{because} ({text})"
    if request_id:
        message += f" [X-Request-Id {request_id}]"
    return error_cls(
        message, registry=registry, repository=repository, status=status, code=code, request_id=request_id
    )
