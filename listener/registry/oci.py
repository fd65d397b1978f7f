"""OCI Distribution client (any registry speaking the distribution API: distribution, Harbor, ...).

Retagging never re-uploads anything: HEAD the tag (already on the digest: `AlreadyThere`; elsewhere:
`TagConflict`, never moved), GET the manifest by digest with every manifest media type accepted,
check the body's digest, and PUT the identical bytes under the new tag with the same Content-Type.
With a token already cached that is three requests per new tag; two when the caller holds the name's
claim and the tag listing taken under it did not show the name (`_create_tag`: no HEAD).

`tags_on` lists the tags and HEADs only the prefixed ones the client's `TagMemory` cannot place (never
seen, or remembered on the asked digest), so its cost does not grow with the repository's history.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from urllib.parse import urljoin, urlsplit

import requests

from listener.registry.auth import PULL, PULL_PUSH, Authenticator
from listener.registry.base import (
    AlreadyThere,
    CheckResult,
    Created,
    DeleteOutcome,
    Observer,
    RegistryClient,
    TagResult,
)
from listener.registry.credentials import Keyring
from listener.registry.errors import DigestMismatch, NotFound, PermanentError, TagConflict, parse_errors
from listener.registry.names import check_repository
from listener.registry.tagmemory import TagMemory, tags_to_head
from listener.registry.tokens import token_access
from listener.registry.transport import RequestHook, RetryPolicy, Sleep
from pulltag.config import RegistrySettings
from pulltag.images import DOCKER_HUB, canonical_host, is_valid_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)

DOCKER_HUB_API_HOST = "registry-1.docker.io"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TAG_PAGES = 10_000

DELETE = frozenset({"delete"})

# A registry that refused deleting a tag by name is not asked again for this long (each refusal would
# cost a token widening, a HEAD and a DELETE per tag; the answer only changes when its operator
# reconfigures it).
REFUSAL_REMEMBERED_SECONDS = 3600.0

log = logging.getLogger(__name__)

_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


def api_base_url(host: str, insecure: bool) -> str:
    """`https://host` (plain HTTP only when insecure); Docker Hub is served at registry-1.docker.io."""
    api_host = DOCKER_HUB_API_HOST if canonical_host(host) == DOCKER_HUB else host
    return f"{'http' if insecure else 'https'}://{api_host}"


def next_link(header: str | None) -> str | None:
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


def compute_digest(algorithm_digest: str, body: bytes) -> str:
    algorithm = algorithm_digest.partition(":")[0]
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def refuses_tag_deletion(status: int, codes: list[str]) -> bool:
    """Whether the answer to `DELETE /v2/<name>/manifests/<tag>` says the registry does not delete tags
    by name. distribution 2.8 answers 405 UNSUPPORTED when `storage.delete` is off, and with it on parses
    the reference as a digest and answers 400 DIGEST_INVALID (both seen against the real registry,
    tests/integration/registry/test_delete.py). Either way nothing was deleted."""
    return status == 405 or "UNSUPPORTED" in codes or (status == 400 and "DIGEST_INVALID" in codes)


class OciClient(RegistryClient):
    kind = "oci"

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        keyring: Keyring | None = None,
        retry: RetryPolicy | None = None,
        observer: Observer | None = None,
        on_request: RequestHook | None = None,
        sleep: Sleep = time.sleep,
        page_size: int = 1000,
    ) -> None:
        super().__init__(
            settings, keyring=keyring, retry=retry, observer=observer, on_request=on_request, sleep=sleep
        )
        self.base_url = api_base_url(self.registry, self.settings.insecure)
        self.page_size = page_size
        self.auth = Authenticator(self)
        self.tag_memory = TagMemory()
        self._refused_deletion_at: float | None = None
        self._refusal_lock = threading.Lock()

    def _request(
        self,
        method: str,
        target: str,
        *,
        repository: str,
        what: str,
        needs: frozenset[str],
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        url = target if target.startswith(("http://", "https://")) else self.base_url + target
        return self.auth.send(
            method, url, repository=repository, what=what, needs=needs, headers=headers, data=data
        )

    # -- manifests ------------------------------------------------------------------------------------

    def _head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest `reference` points at, or None when the registry says 404."""
        what = f"manifest lookup of {reference}"
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            what=what,
            needs=PULL,
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if response.status_code == 404:
            self.tag_memory.forget(repository, reference)
            return None
        if response.status_code != 200:
            raise self._failure(response, what, repository)
        digest = response.headers.get("Docker-Content-Digest", "")
        if not is_valid_digest(digest):
            # Some registries omit the header on HEAD: hash the manifest itself.
            body, _ = self._get_manifest(repository, reference)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ":" not in reference:  # a tag (a digest reference says nothing about tags)
            self.tag_memory.learn(repository, reference, digest)
        return digest

    def _get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        what = f"manifest download of {reference}"
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            what=what,
            needs=PULL,
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if response.status_code != 200:
            raise self._failure(response, what, repository)
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise PermanentError(
                f"{self.registry}: manifest {reference} in repository {repository} is larger than "
                f"{MAX_MANIFEST_BYTES} bytes",
                registry=self.registry,
                repository=repository,
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in MANIFEST_MEDIA_TYPES:
            try:
                declared = json.loads(body).get("mediaType")
            except (ValueError, AttributeError):
                declared = None
            if isinstance(declared, str) and declared in MANIFEST_MEDIA_TYPES:
                content_type = declared
            elif not content_type:
                content_type = OCI_MANIFEST
        return body, content_type

    # -- operations -----------------------------------------------------------------------------------

    def _digest_of(self, repository: str, reference: str) -> str:
        digest = self._head_manifest(repository, reference)
        if digest is None:
            raise NotFound(
                f"{self.registry}: manifest {reference} not found in repository {repository}",
                registry=self.registry,
                repository=repository,
                status=404,
            )
        return digest

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of the repository, following `Link: rel="next"` pages; copes with registries
        that ignore `n`/`last` (every page the same, or everything at once and unsorted)."""
        return self._list_tags(repository)[0]

    def _list_tags(self, repository: str) -> tuple[list[str], bool]:
        """The tags, and whether the listing is known complete: its last page had no next link (not cut
        by the page limit, a loop, or a link to another host)."""
        check_repository(self.registry, repository)
        what = "tag listing"
        target: str | None = f"/v2/{repository}/tags/list?n={self.page_size}"
        seen: set[str] = set()
        ordered: list[str] = []
        visited: set[str] = set()
        unpaged_tried = False
        origin = urlsplit(self.base_url)
        for _ in range(MAX_TAG_PAGES):
            if target is None or target in visited:
                break
            visited.add(target)
            response = self._request("GET", target, repository=repository, what=what, needs=PULL)
            if response.status_code == 404 and not ordered and _name_unknown(response):
                # distribution answers so for a repository whose manifests were pushed by digest only
                # (no tag yet): no tags. A repository that does not exist fails at the manifest instead.
                return [], True
            if response.status_code != 200:
                raise self._failure(response, what, repository)
            try:
                body = json.loads(response.content)
            except ValueError:
                raise PermanentError(
                    f"{self.registry}: tag listing of repository {repository} is not JSON",
                    registry=self.registry,
                    repository=repository,
                ) from None
            tags = body.get("tags") if isinstance(body, dict) else None
            fresh = 0
            for tag in tags or []:
                if isinstance(tag, str) and tag not in seen:
                    seen.add(tag)
                    ordered.append(tag)
                    fresh += 1
            link = next_link(response.headers.get("Link"))
            if fresh == 0 and not unpaged_tried:
                # The registry ignores `last` (the same page again): ask once without `n`.
                unpaged_tried = True
                target = f"/v2/{repository}/tags/list"
                continue
            if link is None:
                return ordered, True
            if fresh == 0:
                break
            absolute = urljoin(response.url or self.base_url, link)
            parts = urlsplit(absolute)
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                break  # never follow a link to another host with our credentials
            target = absolute
        return ordered, False

    def _tags_on(self, repository: str, digest: str, prefix: str) -> list[str]:
        started = time.monotonic()  # before the first page: the listing shows every write done by then
        listed, complete = self._list_tags(repository)
        self.tag_memory.retain(repository, listed)
        if complete:  # a cut listing may miss the name `create_tag` is about to write
            self.tag_memory.record_listing(repository, listed, started)
        to_head = tags_to_head(listed, prefix, digest, self.tag_memory.known(repository))
        return [tag for tag in to_head if self._head_manifest(repository, tag) == digest]

    def _name_absent(self, repository: str, tag: str, listed_since: float | None) -> bool:
        """Whether `tag` is known absent without a HEAD. Safe only under the caller's promise
        (`listed_since`, the tagger's name claim): no pulltag writer can write the name from `listed_since`
        on, and the listing believed began at or after it, so it shows every pulltag write of the name that
        finished before the claim (writers hold the claim until their PUT has returned); none can happen
        after. A name the listing shows (on any digest) is HEADed as before, so a name on another digest
        still raises `TagConflict` and the tagger takes the suffixed name. What remains is the window the
        HEAD always left: a tag made by hand between the listing and the PUT (now the listing, the HEADs of
        `tags_on` and the manifest GET long instead of one GET). It assumes the registry's tag listing is as
        current as its manifests, as in distribution (both read the same storage) and Harbor."""
        return listed_since is not None and self.tag_memory.absent_since(repository, tag, listed_since)

    def _create_tag(
        self, repository: str, digest: str, tag: str, listed_since: float | None = None
    ) -> TagResult:
        existing = (
            None if self._name_absent(repository, tag, listed_since) else self._head_manifest(repository, tag)
        )
        if existing == digest:
            return AlreadyThere(repository=repository, tag=tag, digest=digest)
        if existing is not None:
            raise TagConflict(
                f"{self.registry}: tag {tag} in repository {repository} already points at {existing}, "
                f"not {digest}; it was left unchanged",
                tag=tag,
                wanted=digest,
                existing=existing,
                registry=self.registry,
                repository=repository,
            )
        body, content_type = self._get_manifest(repository, digest)
        actual = compute_digest(digest, body)
        if actual != digest:
            raise DigestMismatch(
                f"{self.registry}: manifest {digest} in repository {repository} hashes to {actual}; "
                "not tagging",
                registry=self.registry,
                repository=repository,
            )
        what = f"creation of tag {tag}"
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            repository=repository,
            what=what,
            needs=PULL_PUSH,
            headers={"Content-Type": content_type},
            data=body,
        )
        if response.status_code not in (200, 201, 202):
            raise self._failure(response, what, repository)
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            self.tag_memory.forget(repository, tag)
            raise DigestMismatch(
                f"{self.registry}: tag {tag} in repository {repository} was stored as {stored}, not {digest}",
                registry=self.registry,
                repository=repository,
            )
        self.tag_memory.learn(repository, tag, digest)
        return Created(repository=repository, tag=tag, digest=digest)

    def _delete_tag(self, repository: str, tag: str, digest: str) -> DeleteOutcome:
        """HEAD the tag (gone: "absent"; elsewhere: "moved"), then `DELETE /v2/<name>/manifests/<tag>`.
        A refusal is "unsupported", remembered for a while; there is no fallback to deleting by digest,
        which would remove the image and every tag on it."""
        if self._deletion_refused_recently():
            return "unsupported"
        current = self._head_manifest(repository, tag)
        if current is None:
            return "absent"
        if current != digest:
            return "moved"
        # OCI has no conditional DELETE: the tag could move between the HEAD and the DELETE. pulltag never
        # moves its tags, so only a hand-made move in those milliseconds could be lost; Harbor's API, which
        # names the digest, closes even that.
        what = f"deletion of tag {tag}"
        response = self._request(
            "DELETE", f"/v2/{repository}/manifests/{tag}", repository=repository, what=what, needs=DELETE
        )
        status = response.status_code
        if status in (200, 202, 204, 404):
            self.tag_memory.forget(repository, tag)
            return "released" if status != 404 else "absent"
        if refuses_tag_deletion(status, [code for code, _ in parse_errors(response)]):
            self._remember_refusal(status)
            return "unsupported"
        raise self._failure(response, what, repository)

    def _deletion_refused_recently(self) -> bool:
        with self._refusal_lock:
            since = self._refused_deletion_at
            return since is not None and time.monotonic() - since < REFUSAL_REMEMBERED_SECONDS

    def _remember_refusal(self, status: int) -> None:
        with self._refusal_lock:
            first = self._refused_deletion_at is None
            self._refused_deletion_at = time.monotonic()
        if first:
            log.warning(
                "%s refuses deleting tags by name (HTTP %d): pulltag's tags stay; use the registry's own "
                "retention rules (pulltag retention policy ...). Never falling back to deleting by digest.",
                self.registry,
                status,
            )

    def _check(self, repository: str | None) -> CheckResult:
        what = "API version check"
        response = self._request("GET", "/v2/", repository="", what=what, needs=frozenset())
        if response.status_code != 200:
            raise self._failure(response, what, "")
        scheme = self.auth.scheme
        authenticated = scheme is not None and self.credentials(repository or "") is not None
        if repository is None or scheme != "bearer":
            detail = "anonymous access" if scheme is None else f"{scheme} authentication"
            return CheckResult(self.registry, authenticated, None, detail)
        cached = self.auth.token(repository, PULL_PUSH)
        access = token_access(cached.token)
        if access is None:
            return CheckResult(self.registry, authenticated, None, "token is opaque")
        granted: set[str] = set()
        for item in access:
            actions = item.get("actions")
            if (
                item.get("type") == "repository"
                and item.get("name") == repository
                and isinstance(actions, list)
            ):
                granted.update(a for a in actions if isinstance(a, str))
        can_push = "push" in granted or "*" in granted
        return CheckResult(
            self.registry, authenticated, can_push, f"token grants {','.join(sorted(granted)) or 'nothing'}"
        )


def _name_unknown(response: requests.Response) -> bool:
    return any(code == "NAME_UNKNOWN" for code, _ in parse_errors(response))
