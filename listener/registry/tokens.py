"""Registry tokens: asking a challenge's realm for one, caching it per scope, reading what it grants.

`GET` the realm with `service` and `scope` (basic credentials if any, else anonymous), or `POST` an
OAuth2 `refresh_token` grant when the credentials hold an `identitytoken`; the answer carries `token`
or `access_token` and `expires_in` (60 s when absent).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from listener.registry.challenges import Challenge
from listener.registry.credentials import Credentials
from listener.registry.errors import AuthenticationFailed, PermanentError, PermissionDenied, describe_response
from listener.registry.transport import HttpCore, basic_auth_header

DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh a little before the server's expiry so a token never dies in flight.
EXPIRY_MARGIN = 5.0
CLIENT_ID = "pulltag"

TokenKey = tuple[str, str, str, str]


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


def credential_identity(creds: Credentials | None) -> str:
    """A non-reversible identity for cache keys (tokens of old credentials are not reused)."""
    if creds is None:
        return "anonymous"
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


def _ask_token_server(
    core: HttpCore,
    challenge: Challenge,
    scopes: list[str],
    creds: Credentials | None,
    what: str,
    repository: str,
) -> requests.Response:
    """The token request: an OAuth2 refresh grant for an identity token, else a GET (basic or anonymous)."""
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
        return core.send("POST", challenge.realm, what=what, repository=repository, data=form)
    params: list[tuple[str, str]] = []
    if challenge.service:
        params.append(("service", challenge.service))
    params.extend(("scope", s) for s in scopes)
    request = requests.Request("GET", challenge.realm, params=params).prepare()
    auth_header: dict[str, str] = {}
    if creds is not None and creds.has_basic:
        auth_header["Authorization"] = basic_auth_header(creds.username, creds.password)
    assert request.url is not None
    return core.send("GET", request.url, what=what, repository=repository, headers=auth_header)


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
    _check_realm(core, challenge.realm, creds)
    what = "token request" + (f" for {' '.join(scopes)}" if scopes else "")
    response = _ask_token_server(core, challenge, scopes, creds, what, repository)
    status = response.status_code
    if status != 200:
        text, code = describe_response(response)
        where = f" in repository {repository}" if repository else ""
        error_cls = {401: AuthenticationFailed, 403: PermissionDenied}.get(status, PermanentError)
        who = "the configured credentials" if creds is not None else "anonymous access"
        message = f"{core.registry}: token server refused {who} for {what}{where} ({text})"
        if error_cls is PermanentError:
            message = f"{core.registry}: token server answered {what} with {text}"
        raise error_cls(message, registry=core.registry, repository=repository, status=status, code=code)
    token, expires_in = _read_token(response.content)
    if not token:
        raise PermanentError(
            f"{core.registry}: token server's answer to {what} holds no token", registry=core.registry
        )
    started = time.monotonic() if now is None else now
    lifetime = max(1.0, expires_in - EXPIRY_MARGIN) if expires_in > 2 * EXPIRY_MARGIN else expires_in / 2
    return token, started + lifetime


def _read_token(content: bytes) -> tuple[str, float]:
    """(token, expires_in) from a token server's JSON answer; ("", default) when it holds none."""
    try:
        body = json.loads(content)
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
    return token, expires_in


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
