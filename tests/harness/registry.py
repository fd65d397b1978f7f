"""A real `docker-registry` (distribution 2.8) on loopback, in three modes, plus helpers to push images.

- `anonymous`: no auth;
- `htpasswd`: basic auth from a bcrypt htpasswd file;
- `token`: Bearer tokens from `TokenServer`, a small HTTP server of the harness that signs ES256 JWTs
  the way distribution's `registry/auth/token` verifies them: `iss` = the configured issuer, `aud` =
  the service (a plain string), `exp`/`nbf`/`iat`, `access` claims, and an `x5c` header holding a
  self-signed certificate that is also the registry's `rootcertbundle`.

Each server runs in its own temporary directory (`storage.filesystem.rootdirectory`), on a free port,
with the health check off and `log.level: warn`. `RegistryServer` also offers the test-facing backend
interface shared with the fake Harbor: `settings(user)`, `credentials_file(user)`, `new_repository()`,
`seed_image()`, `set_tag()`, `tag_digest()`.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import gzip
import hashlib
import io
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import bcrypt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from listener.registry.credentials import Credentials
from pulltag.config import RegistrySettings
from tests.harness.dockerconfig import write_docker_config
from tests.harness.procs import ManagedProcess, free_port, port_open, require_binary

Mode = Literal["anonymous", "htpasswd", "token"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

SERVICE = "pulltag-test-registry"
ISSUER = "pulltag-test-token-issuer"

# Users every harness knows. `reader` may only pull; `admin` may pull and push everywhere.
PASSWORDS = {"admin": "admin-secret-pw", "reader": "reader-secret-pw"}
REFRESH_TOKENS = {"admin-refresh-token-0123456789": "admin"}

_counter = itertools.count(1)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique_name(stem: str = "repo") -> str:
    return f"{stem}{next(_counter)}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------------
# Token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenUser:
    password: str
    # (repository glob, allowed actions)
    rules: list[tuple[str, frozenset[str]]]

    def allowed(self, repository: str) -> frozenset[str]:
        granted: set[str] = set()
        for pattern, actions in self.rules:
            if fnmatch.fnmatchcase(repository, pattern):
                granted |= actions
        return frozenset(granted)


def default_token_users() -> dict[str, TokenUser]:
    return {
        "admin": TokenUser(PASSWORDS["admin"], [("*", frozenset({"pull", "push", "delete"}))]),
        "reader": TokenUser(PASSWORDS["reader"], [("*", frozenset({"pull"}))]),
    }


@dataclass
class TokenRequestRecord:
    method: str
    user: str | None
    scopes: list[str]
    granted: list[dict[str, Any]]
    status: int


class TokenServer:
    """Issues registry tokens: GET realm?service=&scope= (basic auth or anonymous) and POST OAuth2."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, TokenUser] | None = None,
        refresh_tokens: Mapping[str, str] | None = None,
        service: str = SERVICE,
        issuer: str = ISSUER,
        expires_in: int = 300,
        anonymous: Iterable[tuple[str, frozenset[str]]] = (),
    ) -> None:
        self.workdir = workdir
        self.users = dict(users if users is not None else default_token_users())
        self.refresh_tokens = dict(refresh_tokens if refresh_tokens is not None else REFRESH_TOKENS)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.anonymous = TokenUser("", list(anonymous))
        # Distribution's token spec grants the subset of the asked actions the account holds; with this on,
        # the server models those that instead refuse (403) a request holding any action the account lacks.
        self.refuses_partial = False
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._self_signed_cert()
        self.cert_path = workdir / "token-root.pem"
        self.log: list[TokenRequestRecord] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _self_signed_cert(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pulltag test token signer")])
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, subject: str, access: list[dict[str, Any]], expires_in: int | None = None) -> str:
        """A signed JWT as distribution 2.8 verifies it (ES256, x5c to the root bundle)."""
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + (expires_in if expires_in is not None else self.expires_in),
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + _b64url(signature)

    def grant(self, user: TokenUser, scopes: list[str]) -> list[dict[str, Any]]:
        access: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            wanted = {a for a in actions.split(",") if a}
            allowed = user.allowed(name)
            granted = sorted(a for a in wanted if a in allowed or "*" in allowed)
            access.append({"type": "repository", "name": name, "actions": granted})
        return access

    def lacks(self, user: TokenUser, scopes: list[str]) -> bool:
        """Whether `user` lacks any action `scopes` ask for."""
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = user.allowed(name)
            wanted = [a for a in actions.split(",") if a]
            if kind == "repository" and name and "*" not in allowed and any(a not in allowed for a in wanted):
                return True
        return False

    def _record(self, record: TokenRequestRecord) -> None:
        with self._lock:
            self.log.append(record)

    def records(self) -> list[TokenRequestRecord]:
        with self._lock:
            return list(self.log)

    def start(self) -> TokenServer:
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="pulltag-test-token"')
                self.end_headers()
                self.wfile.write(data)

            def _deny(self, method: str, scopes: list[str], user: str | None) -> None:
                server._record(TokenRequestRecord(method, user, scopes, [], 401))
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]})

            def _issue(
                self, method: str, who: str | None, account: TokenUser, scopes: list[str], oauth: bool
            ) -> None:
                access = server.grant(account, scopes)
                if server.refuses_partial and server.lacks(account, scopes):
                    server._record(TokenRequestRecord(method, who, scopes, [], 403))
                    self._reply(403, {"errors": [{"code": "DENIED", "message": "requested access denied"}]})
                    return
                token = server.issue(who or "", access)
                server._record(TokenRequestRecord(method, who, scopes, access, 200))
                body: dict[str, Any] = {
                    "expires_in": server.expires_in,
                    "issued_at": dt.datetime.now(dt.UTC).isoformat(),
                }
                if oauth:
                    body.update(access_token=token, scope=" ".join(scopes))
                else:
                    body.update(token=token, access_token=token)
                self._reply(200, body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                if parts.path != "/token" or query.get("service", [""])[0] != server.service:
                    self._reply(400, {"errors": [{"code": "BAD_REQUEST", "message": "unknown service"}]})
                    return
                header = self.headers.get("Authorization", "")
                if not header:
                    self._issue("GET", None, server.anonymous, scopes, oauth=False)
                    return
                try:
                    scheme, _, value = header.partition(" ")
                    user, _, password = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    scheme, user, password = "", "", ""
                account = server.users.get(user)
                if scheme.lower() != "basic" or account is None or account.password != password:
                    self._deny("GET", scopes, user or None)
                    return
                self._issue("GET", user, account, scopes, oauth=False)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                scopes = [s for value in form.get("scope", []) for s in value.split(" ") if s]
                if urlsplit(self.path).path != "/token" or form.get("service", [""])[0] != server.service:
                    self._reply(400, {"errors": [{"code": "BAD_REQUEST", "message": "unknown service"}]})
                    return
                grant = form.get("grant_type", [""])[0]
                user: str | None = None
                if grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                elif grant == "password":
                    name = form.get("username", [""])[0]
                    account = server.users.get(name)
                    if account is not None and account.password == form.get("password", [""])[0]:
                        user = name
                account = server.users.get(user or "")
                if user is None or account is None:
                    self._deny("POST", scopes, None)
                    return
                self._issue("POST", user, account, scopes, oauth=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="token-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# ---------------------------------------------------------------------------------------------------
# Images


def _layer(seed: str) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(f"pulltag test layer {seed}\n".encode() + secrets.token_bytes(64))
    return buffer.getvalue()


@dataclass
class PushedImage:
    repository: str
    digest: str
    media_type: str
    manifest: bytes
    children: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# The registry


class RegistryServer:
    """A docker-registry process in one of three auth modes, with a pusher that bypasses pulltag."""

    type = "oci"

    def __init__(
        self,
        workdir: Path,
        mode: Mode = "anonymous",
        *,
        token_expires_in: int = 300,
        delete_enabled: bool = True,
    ) -> None:
        self.workdir = workdir
        self.mode = mode
        # `storage.delete.enabled`: off, distribution refuses every manifest DELETE with 405 UNSUPPORTED.
        self.delete_enabled = delete_enabled
        self.port = 0
        self.process: ManagedProcess | None = None
        self.token_server: TokenServer | None = None
        self.token_expires_in = token_expires_in
        self._session = requests.Session()
        self._session.trust_env = False
        self._admin_tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"oci-{self.mode}" + ("" if self.delete_enabled else "-nodelete")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    # -- lifecycle --------------------------------------------------------------------------------

    def _config(self) -> str:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            f"    enabled: {'true' if self.delete_enabled else 'false'}",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
            "health:",
            "  storagedriver:",
            "    enabled: false",
        ]
        if self.mode == "htpasswd":
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                    for user, pw in PASSWORDS.items()
                )
            )
            lines += ["auth:", "  htpasswd:", "    realm: pulltag-test", f"    path: {htpasswd}"]
        elif self.mode == "token":
            assert self.token_server is not None
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token_server.realm}",
                f"    service: {self.token_server.service}",
                f"    issuer: {self.token_server.issuer}",
                f"    rootcertbundle: {self.token_server.cert_path}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        binary = require_binary("docker-registry", "docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.mode == "token":
            self.token_server = TokenServer(self.workdir, expires_in=self.token_expires_in).start()
        self.port = free_port()
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        self.process = ManagedProcess(
            f"docker-registry-{self.mode}", [binary, "serve", str(config)], self.workdir
        )
        self.process.start()
        self.process.wait_ready(lambda: port_open("127.0.0.1", self.port) and self._answers())
        return self

    def _answers(self) -> bool:
        response = self._session.get(self.base_url + "/v2/", timeout=2)
        return response.status_code in (200, 401)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self.token_server is not None:
            self.token_server.stop()
        self._session.close()

    # -- settings for clients ---------------------------------------------------------------------

    def credentials_file(self, user: str | None = "admin", *, key: str | None = None) -> Path | None:
        """A dockerconfigjson for `user` (None: no file, anonymous); `key` overrides the auths key."""
        if user is None:
            return None
        path = self.workdir / "creds" / f"{user}-{uuid.uuid4().hex[:6]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_docker_config(
            path, {key or self.host: Credentials(user, PASSWORDS.get(user, "wrong-password"))}
        )

    def identity_credentials_file(self, refresh_token: str) -> Path:
        path = self.workdir / "creds" / f"identity-{uuid.uuid4().hex[:6]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_docker_config(path, {self.host: Credentials(identity_token=refresh_token)})

    def settings(self, user: str | None = "admin", **overrides: Any) -> RegistrySettings:
        creds = self.credentials_file(user)
        values: dict[str, Any] = {
            "host": self.host,
            "type": "oci",
            "credentials": str(creds) if creds is not None else None,
            "insecure": True,
            "connect_timeout": 2.0,
            "read_timeout": 10.0,
        }
        values.update(overrides)
        return RegistrySettings(**values)

    # -- the harness's own access (never through pulltag's client) -----------------------------

    def _auth_headers(self, repository: str) -> dict[str, str]:
        if self.mode == "htpasswd":
            raw = f"admin:{PASSWORDS['admin']}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self.mode == "token":
            assert self.token_server is not None
            with self._lock:
                cached = self._admin_tokens.get(repository)
                if cached is None or cached[1] < time.monotonic():
                    access = [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]
                    cached = (
                        self.token_server.issue("harness", access, expires_in=3600),
                        time.monotonic() + 3000,
                    )
                    self._admin_tokens[repository] = cached
            return {"Authorization": f"Bearer {cached[0]}"}
        return {}

    def _call(self, method: str, path: str, repository: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers.update(self._auth_headers(repository))
        url = path if path.startswith("http") else self.base_url + path
        return self._session.request(method, url, headers=headers, timeout=10, **kwargs)

    def push_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload: POST to open the upload, PUT the bytes with ?digest=."""
        digest = sha256_digest(data)
        started = self._call("POST", f"/v2/{repository}/blobs/uploads/", repository)
        assert started.status_code == 202, (started.status_code, started.text)
        location = started.headers["Location"]
        if location.startswith("/"):
            location = self.base_url + location
        separator = "&" if "?" in location else "?"
        done = self._call(
            "PUT",
            f"{location}{separator}digest={digest}",
            repository,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, (done.status_code, done.text)
        return digest

    def push_manifest(self, repository: str, reference: str | None, body: bytes, media_type: str) -> str:
        digest = sha256_digest(body)
        response = self._call(
            "PUT",
            f"/v2/{repository}/manifests/{reference or digest}",
            repository,
            data=body,
            headers={"Content-Type": media_type},
        )
        assert response.status_code == 201, (response.status_code, response.text)
        assert response.headers.get("Docker-Content-Digest") == digest
        return digest

    def push_image(
        self,
        repository: str,
        tag: str | None = None,
        *,
        kind: Literal["oci", "docker"] = "oci",
        platform: tuple[str, str] = ("linux", "amd64"),
    ) -> PushedImage:
        """One config blob, one layer blob, one manifest (OCI or Docker schema2); a fresh digest each time."""
        seed = uuid.uuid4().hex
        layer = _layer(seed)
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
        config = json.dumps(
            {
                "architecture": platform[1],
                "os": platform[0],
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "config": {"Labels": {"pulltag.test/seed": seed}},
            },
            sort_keys=True,
        ).encode()
        config_digest = self.push_blob(repository, config)
        layer_digest = self.push_blob(repository, layer)
        config_type, layer_type, manifest_type = (
            (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST)
            if kind == "oci"
            else (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST)
        )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(layer)}],
            },
            indent=3,  # not the canonical form: a retag must keep these exact bytes
        ).encode()
        digest = self.push_manifest(repository, tag, manifest, manifest_type)
        return PushedImage(repository, digest, manifest_type, manifest)

    def push_index(
        self,
        repository: str,
        tag: str | None = None,
        *,
        kind: Literal["oci", "docker"] = "oci",
        platforms: Iterable[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
    ) -> PushedImage:
        """A multi-arch index (OCI) or manifest list (Docker); the children are pushed first, by digest."""
        entries = []
        children = []
        for os_name, arch in platforms:
            child = self.push_image(repository, None, kind=kind, platform=(os_name, arch))
            children.append(child.digest)
            entries.append(
                {
                    "mediaType": child.media_type,
                    "digest": child.digest,
                    "size": len(child.manifest),
                    "platform": {"os": os_name, "architecture": arch},
                }
            )
        index_type = OCI_INDEX if kind == "oci" else DOCKER_LIST
        body = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
        digest = self.push_manifest(repository, tag, body, index_type)
        return PushedImage(repository, digest, index_type, body, children)

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str] | None:
        """(bytes, content type, Docker-Content-Digest), or None when the registry says 404."""
        # distribution 2.8 rewrites a digest's revision link file in place on every PUT of that manifest,
        # under any tag: a read of any tag of that digest landing mid-write finds the link empty and gets
        # 500 "invalid checksum digest format" (seen while a listener added a second tag to a digest). The
        # link is a moment from readable again, so a 5xx is read again briefly before it counts as a failure.
        deadline = time.monotonic() + 5.0
        while True:
            response = self._call(
                "GET", f"/v2/{repository}/manifests/{reference}", repository, headers={"Accept": ACCEPT_ALL}
            )
            if response.status_code < 500 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, (response.status_code, response.text)
        return response.content, response.headers["Content-Type"], response.headers["Docker-Content-Digest"]

    def list_tags(self, repository: str) -> list[str]:
        response = self._call("GET", f"/v2/{repository}/tags/list", repository)
        assert response.status_code == 200, response.text
        return list(response.json().get("tags") or [])

    # -- the backend interface shared with the fake Harbor ----------------------------------------

    def new_repository(self, stem: str = "team/app") -> str:
        return unique_name(stem)

    def seed_image(self, repository: str, tag: str | None = None) -> str:
        return self.push_image(repository, tag).digest

    def set_tag(self, repository: str, tag: str, digest: str) -> None:
        found = self.get_manifest(repository, digest)
        assert found is not None
        self.push_manifest(repository, tag, found[0], found[1])

    def tag_digest(self, repository: str, tag: str) -> str | None:
        found = self.get_manifest(repository, tag)
        return None if found is None else found[2]
