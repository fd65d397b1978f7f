"""Registry authentication: the 401 handshake, token requests and a token cache.

Implements the Docker/OCI token protocol as registries speak it (challenges are read in `challenges`):

- `Basic realm=...`: send basic credentials on every request once challenged;
- `Bearer realm=...,service=...,scope=...`: GET the realm with `service` and `scope` (basic
  credentials if any, else anonymous), or POST an OAuth2 `refresh_token` grant when the credentials
  hold an `identitytoken`; the answer carries `token` or `access_token` and `expires_in` (60 s when
  absent);
- tokens are cached per resource scope (`repository:NAME`) with the actions they were asked for; a
  401 carrying `error="insufficient_scope"` after a token was sent asks for the union of the cached
  and the challenged actions (e.g. `pull` widened to `pull,push`); any other 401 after a token was
  sent gets one fresh token, then the credentials are taken as rejected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests

from listener.registry.challenges import (
    Challenge,
    challenge_from,
    parse_scope,
    render_scope,
    repository_resource,
)
from listener.registry.credentials import Credentials
from listener.registry.errors import AuthenticationFailed, PermanentError, PermissionDenied, describe_response
from listener.registry.transport import HttpCore, basic_auth_header

if TYPE_CHECKING:
    from listener.registry.base import RegistryClient

DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh a little before the server's expiry so a token never dies in flight.
EXPIRY_MARGIN = 5.0
CLIENT_ID = "pulltag"
# Answers to one request's challenges before giving up: basic, a token, a wider token, a fresh one.
MAX_CHALLENGES = 5

PULL = frozenset({"pull"})

TokenKey = tuple[str, str, str, str]


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


# ---------------------------------------------------------------------------------------------------
# The handshake


@dataclass
class _Call:
    """One request being authenticated: what it needs, and which answers it has had already."""

    what: str
    repository: str
    resource: str
    needs: frozenset[str]
    creds: Credentials | None
    widened: bool = False
    refreshed: bool = False


class Authenticator:
    """The 401 handshake of one OCI client: which scheme the registry asked for, and its tokens."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.core = client.http
        self.registry = client.registry
        self.tokens = TokenCache()
        self.scheme: str | None = None  # None until challenged: "basic" or "bearer"
        self.challenge: Challenge | None = None

    def send(
        self,
        method: str,
        url: str,
        *,
        repository: str,
        what: str,
        needs: frozenset[str],
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        """Send, answering the registry's challenges; any answer but 401 is returned as is."""
        resource = repository_resource(repository) if repository else ""
        call = _Call(what, repository, resource, needs, self.client.credentials(repository))
        for _ in range(MAX_CHALLENGES):
            auth = self._headers(call)
            response = self.core.send(
                method, url, what=what, repository=repository, headers={**(headers or {}), **auth}, data=data
            )
            if response.status_code != 401:
                return response
            self._answer(response, call, sent_auth=bool(auth))
        raise self._rejected(call, None)

    def token(self, repository: str, actions: frozenset[str]) -> CachedToken:
        """A fresh token for `actions` on `repository` (after a Bearer challenge)."""
        creds = self.client.credentials(repository)
        return self._obtain(repository_resource(repository), actions, creds, repository)

    # -- answering a 401 ----------------------------------------------------------------------------

    def _answer(self, response: requests.Response, call: _Call, *, sent_auth: bool) -> None:
        """Prepare the next try for a 401, or raise when another try cannot help."""
        challenge = challenge_from(response)
        text, code = describe_response(response)
        if challenge is None:
            raise AuthenticationFailed(
                f"{self.registry}: {call.what} refused in repository {call.repository or '-'} "
                f"with 401 and no usable challenge ({text})",
                registry=self.registry,
                repository=call.repository,
                status=401,
                code=code,
            )
        if challenge.scheme == "basic":
            if call.creds is None or not call.creds.has_basic:
                raise self._no_credentials(call, code)
            if self.scheme == "basic" and sent_auth:
                raise self._rejected(call, code)
            self.scheme = "basic"
            return
        if self.scheme != "bearer" or self.challenge is None or _realm(self.challenge) != _realm(challenge):
            self.scheme, self.challenge = "bearer", challenge
            sent_auth = False
        self._answer_bearer(challenge, call, sent_auth, text, code)

    def _answer_bearer(
        self, challenge: Challenge, call: _Call, sent_auth: bool, text: str, code: str | None
    ) -> None:
        challenged: frozenset[str] = frozenset()
        for scope in challenge.scopes:
            parsed = parse_scope(scope)
            if parsed is not None and parsed[0] == call.resource:
                challenged |= parsed[1]
        key = self._key(call.resource, call.creds)
        cached = self.tokens.get(key)
        wanted = challenged | call.needs if call.resource else frozenset()
        if not sent_auth:
            self._obtain(call.resource, wanted, call.creds, call.repository)
        elif challenge.error == "insufficient_scope":
            if call.widened:
                raise self._lacking(call, challenged, text, code)
            call.widened = True
            held = cached.actions if cached is not None else frozenset()
            self._obtain(call.resource, held | challenged | call.needs, call.creds, call.repository)
        else:
            # invalid_token or no error: the token expired or was revoked; try one fresh token.
            if call.refreshed:
                raise self._rejected(call, code)
            call.refreshed = True
            held = cached.actions if cached is not None else call.needs
            self.tokens.drop(key)
            self._obtain(
                call.resource,
                held | call.needs if call.resource else frozenset(),
                call.creds,
                call.repository,
            )

    # -- tokens -------------------------------------------------------------------------------------

    def _key(self, resource: str, creds: Credentials | None) -> TokenKey:
        assert self.challenge is not None
        return (self.challenge.realm, self.challenge.service, resource, credential_identity(creds))

    def _obtain(
        self, resource: str, actions: frozenset[str], creds: Credentials | None, repository: str
    ) -> CachedToken:
        assert self.challenge is not None
        scopes = [render_scope(resource, actions)] if resource and actions else []
        token, expires_at = fetch_token(self.core, self.challenge, scopes, creds, repository=repository)
        cached = CachedToken(token=token, actions=actions, expires_at=expires_at)
        self.tokens.put(self._key(resource, creds), cached)
        return cached

    def _headers(self, call: _Call) -> dict[str, str]:
        creds = call.creds
        if self.scheme == "basic":
            if creds is not None and creds.has_basic:
                return {"Authorization": basic_auth_header(creds.username, creds.password)}
            return {}
        if self.scheme != "bearer":
            return {}
        cached = self.tokens.get(self._key(call.resource, creds))
        if cached is None:
            wanted = call.needs if call.resource else frozenset()
            cached = self._obtain(call.resource, wanted, creds, call.repository)
        elif not cached.fresh(time.monotonic()):
            cached = self._obtain(call.resource, cached.actions | call.needs, creds, call.repository)
        return {"Authorization": f"Bearer {cached.token}"}

    # -- errors -------------------------------------------------------------------------------------

    def _no_credentials(self, call: _Call, code: str | None) -> AuthenticationFailed:
        if self.client.keyring is not None and call.creds is None:
            error = self.client.no_matching_credentials(call.repository)
            error.status, error.code = 401, code
            return error
        return AuthenticationFailed(
            f"{self.registry}: {call.what} in repository {call.repository or '-'} requires authentication "
            "and no credentials are configured for this registry",
            registry=self.registry,
            repository=call.repository,
            status=401,
            code=code,
        )

    def _rejected(self, call: _Call, code: str | None) -> AuthenticationFailed:
        return AuthenticationFailed(
            f"{self.registry}: {call.what} in repository {call.repository or '-'} refused: "
            "the registry rejected the configured credentials",
            registry=self.registry,
            repository=call.repository,
            status=401,
            code=code,
        )

    def _lacking(
        self, call: _Call, challenged: frozenset[str], text: str, code: str | None
    ) -> PermanentError:
        if call.creds is None:
            return self._no_credentials(call, code)
        wanted = challenged | call.needs
        missing = sorted(wanted - PULL) or sorted(wanted)
        return PermissionDenied(
            f"{self.registry}: {call.what} refused in repository {call.repository}: the credentials "
            f"lack {'/'.join(missing) or 'the needed'} permission ({text})",
            registry=self.registry,
            repository=call.repository,
            status=401,
            code=code,
        )


def _realm(challenge: Challenge) -> tuple[str, str]:
    return (challenge.realm, challenge.service)
