"""Harbor client (API v2.0, `harbor-api-v2.0-swagger.yaml`).

- tags of a digest: `GET /projects/{p}/repositories/{r}/artifacts/{digest}?with_tag=true`;
- create: `POST /projects/{p}/repositories/{r}/artifacts/{digest}/tags` with `{"name": tag}`: 201;
  409 means the tag exists somewhere in the repository, so the artifact behind the tag is looked up
  to answer `AlreadyThere` or `TagConflict`; 405 (proxy-cache project), 412 (immutability rule) and
  403 (no permission, e.g. a robot account without push) are permanent;
- delete a tag: `GET .../artifacts/{tag}` (gone: "absent"; on another digest: "moved"), then
  `DELETE /projects/{p}/repositories/{r}/artifacts/{digest}/tags/{tag}`: 200 "released", 412 (an
  immutability rule) "immutable", 404 (gone meanwhile) looked up again;
- the repository part after the project is URL-encoded twice (`a/b` -> `a%252Fb`);
- basic authentication (robot accounts `robot$name` included), no cookies ever (Harbor enforces its
  CSRF check once its session cookie is sent back), an `X-Request-Id` on every request.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests

from listener.registry.base import (
    AlreadyThere,
    CheckResult,
    Created,
    DeleteOutcome,
    RegistryClient,
    TagResult,
)
from listener.registry.errors import InvalidName, NotFound, PermanentError, TagConflict, parse_errors
from listener.registry.transport import basic_auth_header

API_PREFIX = "/api/v2.0"


def split_repository(registry: str, repository: str) -> tuple[str, str]:
    project, sep, rest = repository.partition("/")
    if not sep or not rest:
        raise InvalidName(
            f"{registry}: Harbor repository {repository!r} needs a project: <project>/<name>; "
            "nothing was sent",
            registry=registry,
            repository=repository,
        )
    return project, rest


def artifact_path(project: str, name: str, reference: str, suffix: str = "") -> str:
    """The artifact URL path; the repository name is encoded twice, as Harbor requires."""
    encoded_name = quote(quote(name, safe=""), safe="")
    return (
        f"{API_PREFIX}/projects/{quote(project, safe='')}/repositories/{encoded_name}"
        f"/artifacts/{quote(reference, safe=':')}{suffix}"
    )


class HarborClient(RegistryClient):
    kind = "harbor"

    @property
    def base_url(self) -> str:
        return f"{'http' if self.settings.insecure else 'https'}://{self.registry}"

    def _auth(self, repository: str) -> dict[str, str]:
        creds = self.credentials(repository)
        if creds is None or not creds.has_basic:
            return {}
        return {"Authorization": basic_auth_header(creds.username, creds.password)}

    def _call(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        what: str,
        json_body: Any = None,
        params: str = "",
        extra_headers: dict[str, str] | None = None,
    ) -> requests.Response:
        headers = {"Accept": "application/json"}
        headers.update(self._auth(repository))
        if extra_headers:
            headers.update(extra_headers)
        url = self.base_url + path + (f"?{params}" if params else "")
        response = self.http.send(
            method, url, what=what, repository=repository, headers=headers, json_body=json_body
        )
        if response.status_code == 404 and not parse_errors(response):
            raise self._not_harbor(response, what, repository)
        return response

    def _not_harbor(self, response: requests.Response, what: str, repository: str) -> NotFound:
        """Harbor answers every 404 of its API with a JSON error list; a bare 404 (distribution's "404
        page not found") means the host is not Harbor, which a plain `NotFound` would hide."""
        where = f" in repository {repository}" if repository else ""
        return NotFound(
            f"{self.registry}: {what}{where} found no Harbor API at {API_PREFIX} (HTTP 404 without Harbor's "
            "error body): is this a plain OCI registry? Then configure it with type: oci",
            registry=self.registry,
            repository=repository,
            status=404,
            request_id=response.headers.get("X-Request-Id"),
        )

    def _artifact(self, repository: str, reference: str, *, with_tag: bool) -> dict[str, Any] | None:
        project, name = split_repository(self.registry, repository)
        what = f"artifact lookup of {reference}"
        response = self._call(
            "GET",
            artifact_path(project, name, reference),
            repository=repository,
            what=what,
            params=f"with_tag={'true' if with_tag else 'false'}",
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._failure(response, what, repository)
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("digest"), str):
            raise PermanentError(
                f"{self.registry}: {what} in repository {repository} answered without an artifact",
                registry=self.registry,
                repository=repository,
            )
        return body

    def _not_found(self, repository: str, reference: str) -> NotFound:
        return NotFound(
            f"{self.registry}: artifact {reference} not found in repository {repository}",
            registry=self.registry,
            repository=repository,
            status=404,
        )

    def _digest_of(self, repository: str, reference: str) -> str:
        artifact = self._artifact(repository, reference, with_tag=False)
        if artifact is None:
            raise self._not_found(repository, reference)
        return str(artifact["digest"])

    def _tags_on(self, repository: str, digest: str, prefix: str) -> list[str]:
        artifact = self._artifact(repository, digest, with_tag=True)
        if artifact is None:
            raise self._not_found(repository, digest)
        tags = artifact.get("tags") or []
        names = [t.get("name") for t in tags if isinstance(t, dict)]
        return [n for n in names if isinstance(n, str) and n.startswith(prefix)]

    def _create_tag(self, repository: str, digest: str, tag: str) -> TagResult:
        project, name = split_repository(self.registry, repository)
        what = f"creation of tag {tag}"
        response = self._call(
            "POST",
            artifact_path(project, name, digest, "/tags"),
            repository=repository,
            what=what,
            json_body={"name": tag},
        )
        if response.status_code in (200, 201):
            return Created(repository=repository, tag=tag, digest=digest)
        if response.status_code == 409:
            # The tag exists somewhere in the repository: on our artifact, or on another one.
            holder = self._artifact(repository, tag, with_tag=False)
            if holder is not None and holder["digest"] == digest:
                return AlreadyThere(repository=repository, tag=tag, digest=digest)
            existing = str(holder["digest"]) if holder is not None else "an unknown artifact"
            raise TagConflict(
                f"{self.registry}: tag {tag} in repository {repository} already points at {existing}, "
                f"not {digest}; it was left unchanged",
                tag=tag,
                wanted=digest,
                existing=existing,
                registry=self.registry,
                repository=repository,
                request_id=response.headers.get("X-Request-Id"),
            )
        if response.status_code == 404:
            raise self._not_found(repository, digest)
        raise self._failure(response, what, repository)

    def _delete_tag(self, repository: str, tag: str, digest: str) -> DeleteOutcome:
        project, name = split_repository(self.registry, repository)
        outcome = self._tag_state(repository, tag, digest)
        if outcome is not None:
            return outcome
        what = f"deletion of tag {tag}"
        # The recorded digest is the reference: had the tag moved between the look and this request, Harbor
        # answers 404 (not on this artifact) instead of deleting it from another one.
        response = self._call(
            "DELETE",
            artifact_path(project, name, digest, f"/tags/{quote(tag, safe='')}"),
            repository=repository,
            what=what,
        )
        if response.status_code == 200:
            return "released"
        if response.status_code == 412:
            return "immutable"
        if response.status_code == 404:
            # Gone or moved meanwhile; a tag still on the digest after a 404 is a refusal we cannot read.
            state = self._tag_state(repository, tag, digest)
            if state is not None:
                return state
        raise self._failure(response, what, repository)

    def _tag_state(self, repository: str, tag: str, digest: str) -> DeleteOutcome | None:
        """None while the tag is on `digest`; else "absent" (no such tag) or "moved" (on another one)."""
        holder = self._artifact(repository, tag, with_tag=False)
        if holder is None:
            return "absent"
        return None if holder["digest"] == digest else "moved"

    def _check(self, repository: str | None) -> CheckResult:
        auth = self._auth(repository or "")
        if not auth:
            what = "ping"
            response = self._call("GET", f"{API_PREFIX}/ping", repository="", what=what)
            if response.status_code != 200:
                raise self._failure(response, what, "")
            return CheckResult(self.registry, False, None, "anonymous access")
        if repository is None:
            what = "permission listing"
            response = self._call("GET", f"{API_PREFIX}/users/current/permissions", repository="", what=what)
            if response.status_code != 200:
                raise self._failure(response, what, "")
            return CheckResult(self.registry, True, None, "basic authentication")
        project, _ = split_repository(self.registry, repository)
        what = f"project lookup of {project}"
        response = self._call(
            "GET",
            f"{API_PREFIX}/projects/{quote(project, safe='')}",
            repository=repository,
            what=what,
            extra_headers={"X-Is-Resource-Name": "true"},
        )
        if response.status_code != 200:
            raise self._failure(response, what, repository)
        try:
            project_id = json.loads(response.content)["project_id"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError(
                f"{self.registry}: {what} answered without a project id", registry=self.registry
            ) from None
        what = "permission listing"
        response = self._call(
            "GET",
            f"{API_PREFIX}/users/current/permissions",
            repository=repository,
            what=what,
            params=f"scope=/project/{int(project_id)}&relative=true",
        )
        if response.status_code != 200:
            raise self._failure(response, what, repository)
        try:
            permissions = json.loads(response.content)
        except ValueError:
            permissions = []
        allowed = {(p.get("resource"), p.get("action")) for p in permissions or [] if isinstance(p, dict)}
        can_push = ("tag", "create") in allowed
        return CheckResult(
            self.registry, True, can_push, "may create tags" if can_push else "may not create tags"
        )
