"""A fake Harbor (API v2.0) built from `harbor-api-v2.0-swagger.yaml`: a threaded HTTP(S) server.

It reproduces what pulltag relies on, with Harbor's paths, status codes and error JSON
(`{"errors": [{"code": "NOT_FOUND", "message": "..."}]}`):

- `GET  /api/v2.0/ping`
- `GET  /api/v2.0/projects/{project_name_or_id}` (`X-Is-Resource-Name: true`)
- `GET  /api/v2.0/users/current/permissions?scope=/project/{id}&relative=true`
- `GET  /api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}?with_tag=`
- `GET  /api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags`
- `POST /api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags` `{"name": ...}`:
  201; 409 when the tag exists on this or another artifact of the repository; 405 in a proxy-cache
  project; 412 when an immutability rule matches; 403 for an account without push permission.
- `DELETE /api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags/{tag_name}` (operationId
  deleteTag): 200; 404 when the tag is not on that artifact (or the artifact is unknown); 412 when the
  tag is immutable (a project rule `immutable_patterns`, or `mark_immutable`); 403 for an account without
  delete permission; 401 anonymous. The tag goes, the artifact and its other tags stay.

Like Harbor, the path is percent-decoded once by the router and the repository name once more by the
handler, so `a/b` must be sent as `a%252Fb`; a single-encoded `a%2Fb` becomes two path segments and
no route matches (404). Basic auth with users and robot accounts (`robot$name`); every authenticated
answer sets a `sid` session cookie, and a write that sends that cookie back without an
`X-Harbor-CSRF-Token` header is refused with 403 (Harbor's CSRF check). Faults can be injected.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from listener.registry.credentials import Credentials
from pulltag.config import RegistrySettings
from tests.harness.dockerconfig import write_docker_config

API = "/api/v2.0"
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_ids = itertools.count(1)

# Accounts every fake Harbor has. Robots carry Harbor's `robot$` prefix.
HARBOR_PASSWORDS = {
    "admin": "Harbor12345-admin",
    "reader": "reader-secret-pw",
    "robot$pulltag": "robot-secret-0123",
    "robot$readonly": "robot-readonly-0123",
}
PUSHERS = frozenset({"admin", "robot$pulltag"})
# Accounts allowed to delete tags (Harbor's "tag delete" permission).
DELETERS = frozenset({"admin", "robot$pulltag"})


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Project:
    name: str
    project_id: int
    public: bool = False
    proxy_cache: bool = False
    immutable_patterns: list[str] = field(default_factory=list)


@dataclass
class Artifact:
    artifact_id: int
    digest: str
    media_type: str
    tags: dict[str, int] = field(default_factory=dict)  # name -> tag id


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: str | None = None
    method: str | None = None


@dataclass
class RecordedRequest:
    method: str
    raw_path: str
    headers: dict[str, str]
    status: int = 0


class FakeHarbor:
    type = "harbor"

    def __init__(self, workdir: Path, *, tls: bool = False) -> None:
        self.workdir = workdir
        self.tls = tls
        self.passwords = dict(HARBOR_PASSWORDS)
        self.pushers = set(PUSHERS)
        self.deleters = set(DELETERS)
        self.immutable_tags: set[tuple[str, str]] = set()  # (repository, tag)
        self.projects: dict[str, Project] = {}
        self.repositories: dict[str, dict[str, Artifact]] = {}  # full name -> digest -> artifact
        self.repository_ids: dict[str, int] = {}
        self.sessions: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.ca_file: Path | None = None
        self.add_project("library", public=True)

    @property
    def name(self) -> str:
        return "harbor-tls" if self.tls else "harbor"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    # -- state ----------------------------------------------------------------------------------------

    def add_project(
        self,
        name: str,
        *,
        public: bool = False,
        proxy_cache: bool = False,
        immutable_patterns: list[str] | None = None,
    ) -> Project:
        with self._lock:
            project = Project(name, next(_ids), public, proxy_cache, list(immutable_patterns or []))
            self.projects[name] = project
            return project

    def add_artifact(
        self, repository: str, tags: list[str] | tuple[str, ...] = (), *, digest: str | None = None
    ) -> str:
        project = repository.partition("/")[0]
        with self._lock:
            if project not in self.projects:
                self.add_project(project)
            if digest is None:
                digest = "sha256:" + hashlib.sha256(secrets.token_bytes(32)).hexdigest()
            artifacts = self.repositories.setdefault(repository, {})
            self.repository_ids.setdefault(repository, next(_ids))
            artifact = artifacts.setdefault(
                digest, Artifact(next(_ids), digest, "application/vnd.oci.image.manifest.v1+json")
            )
            for tag in tags:
                self._move_tag(repository, tag, digest)
            return artifact.digest

    def _move_tag(self, repository: str, tag: str, digest: str) -> None:
        for artifact in self.repositories[repository].values():
            artifact.tags.pop(tag, None)
        self.repositories[repository][digest].tags[tag] = next(_ids)

    def mark_immutable(self, repository: str, tag: str) -> None:
        """Protect one tag as an immutability rule would: deleting it answers 412."""
        with self._lock:
            self.immutable_tags.add((repository, tag))

    def _immutable(self, project: Project, repository: str, tag: str) -> bool:
        return (repository, tag) in self.immutable_tags or any(
            re.fullmatch(p.replace("*", ".*"), tag) for p in project.immutable_patterns
        )

    def tags_of(self, repository: str, digest: str) -> list[str]:
        """The tags on one artifact, sorted ([] for an unknown artifact)."""
        with self._lock:
            artifact = self.repositories.get(repository, {}).get(digest)
            return sorted(artifact.tags) if artifact is not None else []

    def tag_digest(self, repository: str, tag: str) -> str | None:
        with self._lock:
            for artifact in self.repositories.get(repository, {}).values():
                if tag in artifact.tags:
                    return artifact.digest
            return None

    def fail_next(
        self, status: int, count: int = 1, *, retry_after: str | None = None, method: str | None = None
    ) -> None:
        """Answer the next `count` API requests (of `method`, if given) with `status`."""
        with self._lock:
            self.faults.append(Fault(status, count, retry_after, method))

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    # -- the backend interface shared with the registry harness ------------------------------------

    def new_repository(self, stem: str = "app") -> str:
        return f"library/team/{stem}{next(_ids)}-{uuid.uuid4().hex[:6]}"

    def seed_image(self, repository: str, tag: str | None = None) -> str:
        return self.add_artifact(repository, [tag] if tag else [])

    def set_tag(self, repository: str, tag: str, digest: str) -> None:
        with self._lock:
            self._move_tag(repository, tag, digest)

    def credentials_file(
        self, user: str | None = "robot$pulltag", *, password: str | None = None
    ) -> Path | None:
        if user is None:
            return None
        path = self.workdir / "creds" / f"harbor-{uuid.uuid4().hex[:8]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = password if password is not None else self.passwords.get(user, "wrong-password")
        return write_docker_config(path, {self.host: Credentials(user, secret)})

    def settings(self, user: str | None = "robot$pulltag", **overrides: Any) -> RegistrySettings:
        creds = self.credentials_file(user)
        values: dict[str, Any] = {
            "host": self.host,
            "type": "harbor",
            "credentials": str(creds) if creds is not None else None,
            "insecure": not self.tls,
            "ca_file": str(self.ca_file) if self.tls and self.ca_file else None,
            "connect_timeout": 2.0,
            "read_timeout": 10.0,
        }
        values.update(overrides)
        return RegistrySettings(**values)

    # -- TLS --------------------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake harbor")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert_path = self.workdir / "harbor-ca.pem"
        key_path = self.workdir / "harbor-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.ca_file = cert_path
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context

    # -- serving -------------------------------------------------------------------------------------

    def start(self) -> FakeHarbor:
        harbor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY, Nagle and the client's delayed
            # ACK add ~40 ms to every keep-alive response, which a real Harbor does not.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                harbor._handle(self, "GET")

            def do_POST(self) -> None:
                harbor._handle(self, "POST")

            def do_PUT(self) -> None:
                harbor._handle(self, "PUT")

            def do_DELETE(self) -> None:
                harbor._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls:
            self._server.socket = self._tls_context().wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-harbor", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- request handling ----------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        request_id = h.headers.get("X-Request-Id") or str(uuid.uuid4())
        record = RecordedRequest(method, h.path, {k: v for k, v in h.headers.items()})
        with self._lock:
            self.requests.append(record)
        status, payload, extra = self._route(h, method, body)
        record.status = status
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("X-Request-Id", request_id)
        h.send_header("Content-Type", "text/plain" if isinstance(payload, bytes) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
        return status, {"errors": [{"code": code, "message": message}]}, {}

    def _authenticate(self, h: BaseHTTPRequestHandler) -> tuple[str | None, bool]:
        """(user, ok): (None, True) anonymous; (None, False) bad credentials."""
        header = h.headers.get("Authorization", "")
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, False
        if scheme.lower() != "basic" or self.passwords.get(user) != password or not user:
            return None, False
        return user, True

    def _cookie_sid(self, h: BaseHTTPRequestHandler) -> str | None:
        for part in h.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "sid" and value:
                return value
        return None

    def _route(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            for fault in self.faults:
                if fault.remaining > 0 and (fault.method is None or fault.method == method):
                    fault.remaining -= 1
                    code = "INTERNAL_SERVER_ERROR" if fault.status >= 500 else "TOO_MANY_REQUESTS"
                    status, payload, _ = self._error(fault.status, code, "injected fault")
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                    return status, payload, headers
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        # Like Go's router: percent-decode the path once, then split into segments.
        segments = unquote(parts.path).split("/")[1:]
        if segments[:2] != ["api", "v2.0"]:
            return self._error(404, "NOT_FOUND", "not found")
        route = segments[2:]

        user, ok = self._authenticate(h)
        if not ok:
            return self._error(401, "UNAUTHORIZED", "unauthorized")
        extra: dict[str, str] = {}
        sid = self._cookie_sid(h)
        csrf_checked = method in ("POST", "PUT", "DELETE", "PATCH")
        if csrf_checked and sid in self.sessions and not h.headers.get("X-Harbor-CSRF-Token"):
            return self._error(403, "FORBIDDEN", "CSRF token invalid")
        if user is not None:
            new_sid = secrets.token_hex(16)
            with self._lock:
                self.sessions.add(new_sid)
            extra["Set-Cookie"] = f"sid={new_sid}; Path=/; HttpOnly"

        def answer(result: tuple[int, Any, dict[str, str]]) -> tuple[int, Any, dict[str, str]]:
            status, payload, more = result
            more = {**extra, **more}
            return status, payload, more

        if route == ["ping"] and method == "GET":
            return answer((200, b"Pong", {}))
        if route == ["users", "current", "permissions"] and method == "GET":
            return answer(self._permissions(user, query))
        if len(route) == 2 and route[0] == "projects" and method == "GET":
            return answer(self._project(user, route[1]))
        if (
            len(route) >= 6
            and route[0] == "projects"
            and route[2] == "repositories"
            and route[4] == "artifacts"
        ):
            project, repo_segment, reference = route[1], route[3], route[5]
            rest = route[6:]
            repository = f"{project}/{unquote(repo_segment)}"
            if rest == [] and method == "GET":
                return answer(self._get_artifact(user, project, repository, reference, query))
            if rest == ["tags"] and method == "POST":
                return answer(self._create_tag(user, project, repository, reference, body))
            if rest == ["tags"] and method == "GET":
                return answer(self._list_tags(user, project, repository, reference))
            if len(rest) == 2 and rest[0] == "tags" and method == "DELETE":
                return answer(self._delete_tag(user, project, repository, reference, rest[1]))
        return answer(self._error(404, "NOT_FOUND", f"no route for {method} {parts.path}"))

    def _can_read(self, user: str | None, project: Project) -> bool:
        return project.public or user is not None

    def _permissions(
        self, user: str | None, query: Mapping[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        if user is None:
            return self._error(401, "UNAUTHORIZED", "unauthorized")
        perms = [{"resource": "repository", "action": "pull"}, {"resource": "tag", "action": "list"}]
        if user in self.pushers:
            perms += [
                {"resource": "repository", "action": "push"},
                {"resource": "tag", "action": "create"},
                {"resource": "artifact", "action": "create"},
            ]
        scope = query.get("scope", [""])[0]
        if scope and not any(scope == f"/project/{p.project_id}" for p in self.projects.values()):
            return 200, [], {}
        return 200, perms, {}

    def _project(self, user: str | None, name_or_id: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            project = self.projects.get(name_or_id) or next(
                (p for p in self.projects.values() if str(p.project_id) == name_or_id), None
            )
        if project is None or not self._can_read(user, project):
            if project is not None and user is None:
                return self._error(401, "UNAUTHORIZED", "unauthorized")
            return self._error(404, "NOT_FOUND", f"project {name_or_id} not found")
        return (
            200,
            {
                "project_id": project.project_id,
                "name": project.name,
                "registry_id": 7 if project.proxy_cache else None,
                "metadata": {"public": "true" if project.public else "false"},
            },
            {},
        )

    def _artifact_json(self, repository: str, artifact: Artifact, with_tag: bool) -> dict[str, Any]:
        project = self.projects[repository.partition("/")[0]]
        repo_id = self.repository_ids[repository]
        body: dict[str, Any] = {
            "id": artifact.artifact_id,
            "type": "IMAGE",
            "media_type": "application/vnd.oci.image.config.v1+json",
            "manifest_media_type": artifact.media_type,
            "project_id": project.project_id,
            "repository_id": repo_id,
            "digest": artifact.digest,
            "size": 1024,
            "push_time": _now(),
            "pull_time": "0001-01-01T00:00:00.000Z",
            "extra_attrs": {},
            "annotations": None,
            "references": None,
            "labels": None,
        }
        if with_tag:
            body["tags"] = [
                {
                    "id": tag_id,
                    "repository_id": repo_id,
                    "artifact_id": artifact.artifact_id,
                    "name": name,
                    "push_time": _now(),
                    "pull_time": "0001-01-01T00:00:00.000Z",
                    "immutable": self._immutable(project, repository, name),
                }
                for name, tag_id in sorted(artifact.tags.items())
            ] or None
        return body

    def _find(self, repository: str, reference: str) -> Artifact | None:
        artifacts = self.repositories.get(repository, {})
        if reference.startswith("sha256:"):
            return artifacts.get(reference)
        return next((a for a in artifacts.values() if reference in a.tags), None)

    def _get_artifact(
        self,
        user: str | None,
        project_name: str,
        repository: str,
        reference: str,
        query: Mapping[str, list[str]],
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            project = self.projects.get(project_name)
            if project is None:
                return self._error(404, "NOT_FOUND", f"project {project_name} not found")
            if not self._can_read(user, project):
                return self._error(401, "UNAUTHORIZED", "unauthorized")
            artifact = self._find(repository, reference)
            if artifact is None:
                return self._error(404, "NOT_FOUND", f"artifact {repository}:{reference} not found")
            with_tag = query.get("with_tag", ["true"])[0] != "false"
            return 200, self._artifact_json(repository, artifact, with_tag), {}

    def _list_tags(
        self, user: str | None, project_name: str, repository: str, reference: str
    ) -> tuple[int, Any, dict[str, str]]:
        status, payload, extra = self._get_artifact(
            user, project_name, repository, reference, {"with_tag": ["true"]}
        )
        if status != 200:
            return status, payload, extra
        tags = payload.get("tags") or []
        return 200, tags, {"X-Total-Count": str(len(tags))}

    def _create_tag(
        self, user: str | None, project_name: str, repository: str, reference: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if user is None:
            return self._error(401, "UNAUTHORIZED", "unauthorized")
        try:
            name = json.loads(body).get("name")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str) or not _TAG_RE.fullmatch(name):
            return self._error(400, "BAD_REQUEST", "invalid tag name")
        with self._lock:
            project = self.projects.get(project_name)
            if project is None:
                return self._error(404, "NOT_FOUND", f"project {project_name} not found")
            if user not in self.pushers:
                return self._error(403, "FORBIDDEN", "forbidden")
            artifact = self._find(repository, reference)
            if artifact is None:
                return self._error(404, "NOT_FOUND", f"artifact {repository}:{reference} not found")
            if project.proxy_cache:
                return self._error(
                    405, "METHOD_NOT_ALLOWED", "the operation isn't supported for a proxy cache project"
                )
            if self.tag_digest(repository, name) is not None:
                return self._error(
                    409, "CONFLICT", f"the tag {name} already exists under the repository {repository}"
                )
            if any(re.fullmatch(p.replace("*", ".*"), name) for p in project.immutable_patterns):
                return self._error(
                    412, "PRECONDITION", f"the tag {name} matches an immutable rule of project {project_name}"
                )
            artifact.tags[name] = next(_ids)
            location = f"{API}/projects/{project_name}/repositories/x/artifacts/{reference}/tags/{name}"
            return 201, b"", {"Location": location}

    def _delete_tag(
        self, user: str | None, project_name: str, repository: str, reference: str, name: str
    ) -> tuple[int, Any, dict[str, str]]:
        if user is None:
            return self._error(401, "UNAUTHORIZED", "unauthorized")
        with self._lock:
            project = self.projects.get(project_name)
            if project is None:
                return self._error(404, "NOT_FOUND", f"project {project_name} not found")
            if user not in self.deleters:
                return self._error(403, "FORBIDDEN", "forbidden")
            artifact = self._find(repository, reference)
            if artifact is None or name not in artifact.tags:
                return self._error(404, "NOT_FOUND", f"tag {name} not found on artifact {reference}")
            if self._immutable(project, repository, name):
                return self._error(412, "PRECONDITION", f"the tag {name} is immutable, cannot be deleted")
            del artifact.tags[name]
            return 200, b"", {}
