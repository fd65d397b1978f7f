"""Registry authentication: WWW-Authenticate challenges, token requests and a token cache.

Implements the Docker/OCI token protocol as registries speak it:

- `Basic realm=...`: send basic credentials on every request once challenged;
- `Bearer realm=...,service=...,scope=...`: GET the realm with `service` and `scope` (basic
  credentials if any, else anonymous), or POST an OAuth2 `refresh_token` grant when the credentials
  hold an `identitytoken`; the answer carries `token` or `access_token` and `expires_in` (60 s when
  absent);
- tokens are cached per resource scope (`repository:NAME`) with the actions they were asked for; a
  401 carrying `error="insufficient_scope"` after a token was sent asks for the union of the cached
  and the challenged actions (e.g. `pull` widened to `pull,push`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from listener.registry.base import HttpCore, basic_auth_header, describe_response
from listener.registry.credentials import Credentials
from listener.registry.errors import AuthenticationFailed, PermanentError, PermissionDenied

DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh a little before the server's expiry so a token never dies in flight.
EXPIRY_MARGIN = 5.0
CLIENT_ID = "pulltag"


# ---------------------------------------------------------------------------------------------------
# Challenges


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic", ...
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> list[str]:
        return self.params.get("scope", "").split()

    @property
    def error(self) -> str:
        return self.params.get("error", "")


def _is_token_char(ch: str) -> bool:
    return ch.isalnum() or ch in "!#$%&'*+-.^_`|~"


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value (RFC 7235): several challenges, quoted strings with commas."""
    challenges: list[Challenge] = []
    i, n = 0, len(header)

    def skip_spaces_commas(pos: int) -> int:
        while pos < n and header[pos] in " \t,":
            pos += 1
        return pos

    def read_token(pos: int) -> tuple[str, int]:
        start = pos
        while pos < n and _is_token_char(header[pos]):
            pos += 1
        return header[start:pos], pos

    current: Challenge | None = None
    while True:
        i = skip_spaces_commas(i)
        if i >= n:
            break
        token, j = read_token(i)
        if not token:
            i += 1  # unexpected character: skip it
            continue
        k = j
        while k < n and header[k] in " \t":
            k += 1
        if k < n and header[k] == "=" and current is not None:
            # auth-param
            k += 1
            while k < n and header[k] in " \t":
                k += 1
            if k < n and header[k] == '"':
                k += 1
                value_chars: list[str] = []
                while k < n and header[k] != '"':
                    if header[k] == "\\" and k + 1 < n:
                        k += 1
                    value_chars.append(header[k])
                    k += 1
                value = "".join(value_chars)
                k += 1  # closing quote
            else:
                start = k
                while k < n and header[k] not in ", \t":
                    k += 1
                value = header[start:k]
            current.params[token.lower()] = value
            i = k
        else:
            current = Challenge(scheme=token.lower(), params={})
            challenges.append(current)
            i = j
    return challenges


def challenge_from(response: requests.Response) -> Challenge | None:
    """The first Bearer challenge, else the first Basic one, else None."""
    values = response.headers.get("WWW-Authenticate", "")
    challenges = parse_challenges(values) if values else []
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


# ---------------------------------------------------------------------------------------------------
# Scopes


def parse_scope(scope: str) -> tuple[str, frozenset[str]] | None:
    """`repository:name:pull,push` -> ("repository:name", {"pull", "push"}); the name may hold ':'."""
    kind, sep, rest = scope.partition(":")
    if not sep:
        return None
    name, sep, actions = rest.rpartition(":")
    if not sep or not name:
        return None
    return f"{kind}:{name}", frozenset(a for a in actions.split(",") if a)


def render_scope(resource: str, actions: Iterable[str]) -> str:
    return f"{resource}:{','.join(sorted(set(actions)))}"


def repository_resource(repository: str) -> str:
    return f"repository:{repository}"


# ---------------------------------------------------------------------------------------------------
# Tokens


@dataclass
class CachedToken:
    token: str
    actions: frozenset[str]
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


class TokenCache:
    """Tokens by (realm, service, resource, credential identity); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str, str], CachedToken] = {}

    def get(self, key: tuple[str, str, str, str]) -> CachedToken | None:
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: tuple[str, str, str, str], token: CachedToken) -> None:
        with self._lock:
            self._tokens[key] = token

    def drop(self, key: tuple[str, str, str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


def credential_identity(creds: Credentials | None) -> str:
    """A non-reversible identity for cache keys (tokens of old credentials are not reused)."""
    if creds is None:
        return "anonymous"
    import hashlib

    material = f"{creds.username}\0{creds.password}\0{creds.identity_token}".encode()
    return hashlib.sha256(material).hexdigest()[:16]


def _check_realm(core: HttpCore, realm: str, creds: Credentials | None) -> None:
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PermanentError(
            f"{core.registry}: the registry's token realm is not an http(s) URL", registry=core.registry
        )
    if parts.scheme == "http" and creds is not None and not core.settings.insecure:
        raise PermanentError(
            f"{core.registry}: refusing to send credentials to a plain-HTTP token realm "
            f"({parts.netloc}); set insecure: true only for local registries",
            registry=core.registry,
        )


def fetch_token(
    core: HttpCore,
    challenge: Challenge,
    scopes: list[str],
    creds: Credentials | None,
    *,
    repository: str = "",
    now: float | None = None,
) -> tuple[str, float]:
    """Ask the challenge's realm for a token for `scopes`; returns (token, expires_at monotonic)."""
    realm = challenge.realm
    _check_realm(core, realm, creds)
    what = "token request" + (f" for {' '.join(scopes)}" if scopes else "")
    if creds is not None and creds.identity_token:
        form: dict[str, str] = {
            "grant_type": "refresh_token",
            "refresh_token": creds.identity_token,
            "service": challenge.service,
            "client_id": CLIENT_ID,
            "access_type": "offline",
        }
        if scopes:
            form["scope"] = " ".join(scopes)
        response = core.send("POST", realm, what=what, repository=repository, data=form)
    else:
        params: list[tuple[str, str]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params.extend(("scope", s) for s in scopes)
        request = requests.Request("GET", realm, params=params).prepare()
        auth_header: dict[str, str] = {}
        if creds is not None and creds.has_basic:
            auth_header["Authorization"] = basic_auth_header(creds.username, creds.password)
        assert request.url is not None
        response = core.send("GET", request.url, what=what, repository=repository, headers=auth_header)
    status = response.status_code
    if status in (401, 403):
        text, code = describe_response(response)
        error_cls = AuthenticationFailed if status == 401 else PermissionDenied
        who = "the configured credentials" if creds is not None else "anonymous access"
        raise error_cls(
            f"{core.registry}: token server refused {who} for {what}"
            + (f" in repository {repository}" if repository else "")
            + f" ({text})",
            registry=core.registry,
            repository=repository,
            status=status,
            code=code,
        )
    if status != 200:
        text, code = describe_response(response)
        raise PermanentError(
            f"{core.registry}: token server answered {what} with {text}",
            registry=core.registry,
            repository=repository,
            status=status,
            code=code,
        )
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    token = ""
    expires_in = DEFAULT_TOKEN_LIFETIME
    if isinstance(body, dict):
        value = body.get("token") or body.get("access_token")
        token = value if isinstance(value, str) else ""
        raw_expiry = body.get("expires_in")
        if isinstance(raw_expiry, int | float) and not isinstance(raw_expiry, bool) and raw_expiry > 0:
            expires_in = float(raw_expiry)
    if not token:
        raise PermanentError(
            f"{core.registry}: token server's answer to {what} holds no token", registry=core.registry
        )
    started = time.monotonic() if now is None else now
    lifetime = max(1.0, expires_in - EXPIRY_MARGIN) if expires_in > 2 * EXPIRY_MARGIN else expires_in / 2
    return token, started + lifetime


def token_access(token: str) -> list[dict[str, object]] | None:
    """The `access` claim of a JWT token (unverified; only to tell what was granted), else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    access = claims.get("access") if isinstance(claims, dict) else None
    if not isinstance(access, list):
        return None
    return [item for item in access if isinstance(item, dict)]
