"""Typed registry errors.

Every error says which registry, which repository and what was refused; none ever carries a
credential (messages are built from names only, never from headers or request bodies).
`transient` tells the caller whether retrying later may help.
"""

from __future__ import annotations


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
