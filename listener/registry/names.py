"""Names checked against the OCI grammar before anything is sent (`InvalidName` says what and where)."""

from __future__ import annotations

from listener.registry.errors import InvalidName
from pulltag.images import is_valid_digest, is_valid_repository, is_valid_tag
from pulltag.logs import clip

MAX_REPOSITORY_LENGTH = 255


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
    return clip(repr(value), 80)
