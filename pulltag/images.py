"""Container image references, read exactly as container runtimes read them.

The rules follow github.com/distribution/reference (``ParseNormalizedNamed``), which is what
containerd, CRI-O and Docker use to turn the image string of a pod spec into a registry, a
repository path, a tag and a digest. Matching those rules matters: the webhook records the image
as admitted, the kubelet reports it back in events and in ``imageID``, and the listener must agree
with the runtime on which registry and repository were really pulled before it tags anything.

Grammar (distribution/reference)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path
    domain           := host [":" port]
    host             := domain-name | "[" ipv6 "]"
    domain-name      := domain-component ["." domain-component]*
    domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    path             := path-component ["/" path-component]*
    path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
    separator        := [._] | "__" | "-"+
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex   (sha256: 64, sha384: 96, sha512: 128 lowercase hex)

Everything here is pure: no I/O, and every invalid input raises :class:`InvalidReference`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TAG",
    "DOCKER_HUB",
    "MAX_NAME_LENGTH",
    "ImageId",
    "ImageReference",
    "InvalidReference",
    "canonical_host",
    "canonical_image_name",
    "is_valid_digest",
    "is_valid_repository",
    "is_valid_tag",
    "parse_image_id",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
# distribution's NameTotalLengthMax, applied to the normalised "registry/repository".
MAX_NAME_LENGTH = 255

# "index.docker.io" is the legacy name of Docker Hub; runtimes rewrite it to docker.io.
_LEGACY_DOCKER_HUB = "index.docker.io"
# Every name Docker Hub is known by: in image references (docker.io, index.docker.io), in credential
# files (index.docker.io, https://index.docker.io/v1/), as its API host (registry-1.docker.io) and its
# old web name (registry.hub.docker.com). One registry, so one canonical name: docker.io.
_DOCKER_HUB_ALIASES = frozenset(
    {DOCKER_HUB, _LEGACY_DOCKER_HUB, "registry-1.docker.io", "registry.hub.docker.com"}
)
_HTTPS_PORT = ":443"
_HTTP_PORT = ":80"
# One-part names on Docker Hub are official images living under "library/".
_OFFICIAL_PREFIX = "library/"
# The reserved host name that is a registry even without a "." or a port.
_LOCALHOST = "localhost"
# The longest valid reference is ~530 characters (name 261 before normalisation, tag 129,
# sha512 digest 136); refuse anything far longer before running any regular expression on it.
_MAX_INPUT_LENGTH = 1024
# Prefixes the Docker (dockershim / cri-dockerd) runtime puts in front of a container's imageID.
_IMAGE_ID_SCHEMES = ("docker-pullable://", "docker://")
# How many characters of the offending text an error message quotes; .text keeps all of it.
_MESSAGE_TEXT_LIMIT = 200

# All patterns spell their character classes out and are compiled with re.ASCII and used with
# fullmatch(): "\w" and "\d" would accept Unicode letters and digits that Go's regexp rejects,
# and "$" would accept a trailing newline.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
# IPv6 addresses only in brackets, without zone ids (as distribution: "[fe80::1%eth0]" is invalid).
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII
)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
# The syntactic shape of a digest (distribution's digestPat); the algorithm is checked separately.
_DIGEST_SHAPE_RE = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII
)
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)
# A bare image id: sha256 hex without the algorithm prefix.
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
# Printable ASCII without space: anything else (whitespace, controls, Unicode) is never valid.
_GRAPHIC_ASCII_RE = re.compile(r"[!-~]+", re.ASCII)

# The algorithms go-digest registers, and the exact hex length each one produces.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """An image reference or image id that a container runtime would not accept.

    ``text`` is the offending input (``repr()`` of it when it was not a string at all) and
    ``reason`` says which rule it broke.
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid image reference {_quote(text)}: {reason}")

    def __reduce__(self) -> tuple[type[InvalidReference], tuple[str, str]]:
        # The default pickling replays self.args (the message) into __init__, which takes two
        # arguments; errors must survive pickling (multiprocessing, logging handlers).
        return (InvalidReference, (self.text, self.reason))


@dataclass(frozen=True, eq=False, slots=True)
class ImageReference:
    """A normalised image reference such as ``docker.io/library/nginx:latest``.

    Two references are equal when they name the same image, i.e. when their :attr:`canonical`
    forms are equal: ``nginx``, ``nginx:latest`` and ``index.docker.io/library/nginx`` are one image.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, e.g. ``docker.io/library/nginx``."""
        return f"{self.registry}/{self.repository}"

    @property
    def canonical(self) -> str:
        """The fully qualified form, e.g. ``docker.io/library/nginx:latest`` or ``...:1@sha256:...``."""
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """The short form Docker shows, e.g. ``nginx:latest``, ``user/app:1``, ``quay.io/x/y:1``."""
        return _familiar_name(self.registry, self.repository) + self._suffix()

    def _suffix(self) -> str:
        # A reference with neither tag nor digest means the default tag, so say so explicitly:
        # that keeps "nginx" and "nginx:latest" the same image.
        if self.tag is None and self.digest is None:
            return f":{DEFAULT_TAG}"
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageReference):
            return NotImplemented
        return self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    def __str__(self) -> str:
        return self.canonical


@dataclass(frozen=True, slots=True)
class ImageId:
    """What the kubelet reports as a container's ``imageID``.

    Either a repository digest (``registry``/``repository`` set: the image as pulled from that
    repository) or only a local image id (``registry`` and ``repository`` are None), which names
    content on the node but no repository that could be tagged.
    """

    registry: str | None
    repository: str | None
    digest: str

    @property
    def has_repository(self) -> bool:
        """Whether this id names a repository (and so something a registry can tag)."""
        return self.registry is not None and self.repository is not None

    @property
    def name(self) -> str | None:
        """``registry/repository``, or None for a local image id."""
        if self.registry is None or self.repository is None:
            return None
        return f"{self.registry}/{self.repository}"

    @property
    def canonical(self) -> str:
        """``registry/repository@digest``, or just the digest for a local image id."""
        name = self.name
        return self.digest if name is None else f"{name}@{self.digest}"

    def __str__(self) -> str:
        return self.canonical


def is_valid_tag(tag: str) -> bool:
    """Whether ``tag`` matches the OCI tag grammar ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``."""
    return isinstance(tag, str) and _TAG_RE.fullmatch(tag) is not None


def is_valid_repository(path: str) -> bool:
    """Whether ``path`` (without registry) matches the OCI repository path grammar.

    Only the grammar: the 255-character limit applies to the whole name and is checked by
    :func:`parse_reference`.
    """
    return isinstance(path, str) and _REPOSITORY_RE.fullmatch(path) is not None


def is_valid_digest(d: str) -> bool:
    """Whether ``d`` is a digest a runtime accepts: ``sha256``/``sha384``/``sha512`` + lowercase hex."""
    return _digest_problem(d) is None


def canonical_host(host: str, *, plain_http: bool = False) -> str:
    """The one name of a registry host, for matching and keys (never for sending requests).

    Host names are case-insensitive, so lower case; the scheme's default port is no port (``:443``,
    or ``:80`` for a registry known to speak plain HTTP); Docker Hub's aliases are ``docker.io``.
    ``Harbor.Example.com:443`` -> ``harbor.example.com``; ``INDEX.docker.io`` -> ``docker.io``.
    """
    name = host.strip().lower()
    default_port = _HTTP_PORT if plain_http else _HTTPS_PORT
    if name.endswith(default_port):
        name = name[: -len(default_port)]
    return DOCKER_HUB if name in _DOCKER_HUB_ALIASES else name


def canonical_image_name(name: str) -> str:
    """``registry/repository`` with the registry in its canonical form (the ledger's key for an image).

    A one-part repository on Docker Hub is an official image, as in :func:`parse_reference`:
    ``registry-1.docker.io/nginx`` and ``docker.io/library/nginx`` are one image.
    """
    registry, slash, repository = name.partition("/")
    if not slash:
        return name
    host = canonical_host(registry)
    if host == DOCKER_HUB and "/" not in repository:
        repository = _OFFICIAL_PREFIX + repository
    return f"{host}/{repository}"


def parse_reference(text: str) -> ImageReference:
    """Parse an image reference the way a container runtime does, normalising it.

    ``nginx`` → ``docker.io/library/nginx:latest``; ``user/app`` → ``docker.io/user/app:latest``;
    ``localhost:5000/app@sha256:…`` keeps no tag. Raises :class:`InvalidReference`.
    """
    _check_text(text)
    # distribution refuses a bare 64-hex name: it could be an image id as well as a repository.
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(text, "a 64-character hex string is an image id, not a repository name")
    # Neither names nor tags may contain "@", so the first "@" starts the digest.
    name_and_tag, at, digest = text.partition("@")
    if at:
        problem = _digest_problem(digest)
        if problem is not None:
            raise InvalidReference(text, problem)
    name, tag = _split_tag(name_and_tag)
    if tag is not None and not is_valid_tag(tag):
        raise InvalidReference(text, f"invalid tag {tag!r}")
    registry, repository = _split_registry(text, name)
    if tag is None and not at:
        tag = DEFAULT_TAG
    return ImageReference(registry, repository, tag, digest if at else None)


def parse_image_id(text: str) -> ImageId:
    """Parse a container status ``imageID``.

    Accepts ``registry/repo@digest`` (containerd, CRI-O), ``docker-pullable://repo@digest`` and
    ``docker://sha256:…`` (Docker), ``sha256:…`` and a bare 64-hex id. A tag next to the digest is
    ignored: the digest alone says what was pulled. Raises :class:`InvalidReference`.
    """
    _check_text(text)
    body = _strip_scheme(text)
    if not body:
        raise InvalidReference(text, "empty image id")
    if _IDENTIFIER_RE.fullmatch(body):
        return ImageId(None, None, f"sha256:{body}")
    # Check the digest shape before the reference grammar: "sha256:<hex>" also reads as the
    # tagged reference "docker.io/library/sha256:<hex>" (distribution's ParseAnyReference order).
    if _looks_like_digest(body):
        problem = _digest_problem(body)
        if problem is not None:
            raise InvalidReference(text, problem)
        return ImageId(None, None, body)
    if "://" in body:
        raise InvalidReference(text, "unknown image id scheme")
    try:
        ref = parse_reference(body)
    except InvalidReference as err:
        # Report the whole imageID, scheme included, not only the part after it.
        raise InvalidReference(text, err.reason) from None
    if ref.digest is None:
        raise InvalidReference(text, "an image id needs a digest")
    return ImageId(ref.registry, ref.repository, ref.digest)


def _check_text(text: object) -> None:
    """Reject what no grammar rule could accept, before any splitting."""
    if not isinstance(text, str):
        raise InvalidReference(repr(text), f"expected a string, got {type(text).__name__}")
    if not text:
        raise InvalidReference(text, "empty")
    if len(text) > _MAX_INPUT_LENGTH:
        raise InvalidReference(text, f"longer than {_MAX_INPUT_LENGTH} characters")
    if not _GRAPHIC_ASCII_RE.fullmatch(text):
        raise InvalidReference(text, "contains whitespace, control or non-ASCII characters")


def _looks_like_digest(body: str) -> bool:
    # A name with a "/" or an "@" is a repository; otherwise a known algorithm or the digest shape
    # before the ":" means a (possibly malformed) digest, which deserves the digest's error message.
    if "/" in body or "@" in body:
        return False
    return body.partition(":")[0] in _DIGEST_HEX_LENGTHS or _DIGEST_SHAPE_RE.fullmatch(body) is not None


def _strip_scheme(text: str) -> str:
    for scheme in _IMAGE_ID_SCHEMES:
        if text.startswith(scheme):
            return text[len(scheme) :]
    return text


def _split_tag(name_and_tag: str) -> tuple[str, str | None]:
    """Split ``name[:tag]``; a ":" before the last "/" belongs to a registry port, not a tag."""
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        return name_and_tag[:colon], name_and_tag[colon + 1 :]
    return name_and_tag, None


def _split_registry(text: str, name: str) -> tuple[str, str]:
    """Split a name into (registry, repository) and validate both, as ParseNormalizedNamed does."""
    if not name:
        raise InvalidReference(text, "missing repository name")
    registry, repository = _split_docker_domain(name)
    if not _DOMAIN_RE.fullmatch(registry):
        raise InvalidReference(text, f"invalid registry {registry!r}")
    if repository.lower() != repository:
        raise InvalidReference(text, f"repository {repository!r} must be lowercase")
    if not is_valid_repository(repository):
        raise InvalidReference(text, f"invalid repository path {repository!r}")
    if len(registry) + 1 + len(repository) > MAX_NAME_LENGTH:
        raise InvalidReference(text, f"name longer than {MAX_NAME_LENGTH} characters")
    return registry, repository


def _split_docker_domain(name: str) -> tuple[str, str]:
    """distribution's splitDockerDomain: decide whether the first component is a registry."""
    first, slash, rest = name.partition("/")
    if not slash:
        # A one-part name is always an official Docker Hub image, even "localhost" or "a.b".
        return DOCKER_HUB, _OFFICIAL_PREFIX + name
    if _looks_like_registry(first):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == _LEGACY_DOCKER_HUB:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = _OFFICIAL_PREFIX + repository
    return registry, repository


def _looks_like_registry(component: str) -> bool:
    # A "." or ":" means a host name, an IP address or a port; "localhost" is reserved; and since
    # repository paths cannot contain upper case, an upper-case first component can only be a host
    # (distribution treats "Foo/bar" as registry "Foo", repository "bar").
    return component == _LOCALHOST or "." in component or ":" in component or component.lower() != component


def _familiar_name(registry: str, repository: str) -> str:
    """Docker's FamiliarName: drop ``docker.io/`` and ``library/`` where that stays unambiguous."""
    if registry != DOCKER_HUB:
        return f"{registry}/{repository}"
    if repository.startswith(_OFFICIAL_PREFIX):
        official = repository[len(_OFFICIAL_PREFIX) :]
        if "/" not in official:
            return official
    # Unlike Docker, keep "docker.io/" when the first path component would otherwise be read back
    # as a registry ("docker.io/foo.bar/x" is not "foo.bar/x"): the familiar form must round-trip.
    if _looks_like_registry(repository.partition("/")[0]):
        return f"{registry}/{repository}"
    return repository


def _digest_problem(d: object) -> str | None:
    """Why ``d`` is not an acceptable digest, or None when it is (go-digest's Parse/Validate)."""
    if not isinstance(d, str):
        return "a digest must be a string"
    algorithm, colon, encoded = d.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if colon and length is not None:
        if len(encoded) == length and _LOWER_HEX_RE.fullmatch(encoded):
            return None
        return f"a {algorithm} digest needs exactly {length} lowercase hex characters"
    if not _DIGEST_SHAPE_RE.fullmatch(d):
        return "digest must look like <algorithm>:<hex>"
    # Well-formed but an algorithm runtimes do not register (go-digest's ErrDigestUnsupported).
    return f"unsupported digest algorithm {algorithm!r}"


def _quote(text: str) -> str:
    """The offending text for an error message: repr() escapes controls, long input is cut."""
    if len(text) > _MESSAGE_TEXT_LIMIT:
        return repr(text[:_MESSAGE_TEXT_LIMIT]) + "…"
    return repr(text)
