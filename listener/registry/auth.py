"""Registry authentication: the answer to a 401, for one client.

- `Basic realm=...`: send basic credentials on every request once challenged;
- `Bearer realm=...,service=...,scope=...`: get a token for the repository's scope (`tokens`) and send
  it; tokens are cached per resource scope (`repository:NAME`) with the actions they were asked for.
  The realm learned from the first challenge serves every repository: a new repository's token is asked
  for directly, without a 401 first, and a repository token always asks for `pull,push` at once (a token
  server grants the subset the account holds), so tagging never pays a second token for push;
- a 401 carrying `error="insufficient_scope"` after a token was sent asks for the union of the cached
  and the challenged actions (e.g. `pull` widened to `pull,push`); any other 401 after a token was
  sent gets one fresh token, then the credentials are taken as rejected.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from listener.registry.tokens import CachedToken, TokenCache, TokenKey, credential_identity, fetch_token
from listener.registry.transport import basic_auth_header

if TYPE_CHECKING:
    from listener.registry.base import RegistryClient

# Answers to one request's challenges before giving up: basic, a token, a wider token, a fresh one.
MAX_CHALLENGES = 5

PULL = frozenset({"pull"})
PULL_PUSH = frozenset({"pull", "push"})


def wanted_actions(resource: str, needs: frozenset[str]) -> frozenset[str]:
    """The actions to ask a token for: none without a resource (the /v2/ check), else pull and push with
    whatever this request needs on top (e.g. delete)."""
    return needs | PULL_PUSH if resource else frozenset()


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
        # Until one exchange has completed, requests go one at a time: workers starting together would
        # each collect the same 401 and ask for the same token.
        self._first_contact = threading.Lock()
        self._contacted = False

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
        if not self._contacted:
            with self._first_contact:
                if not self._contacted:
                    try:
                        return self._send(method, url, repository, what, needs, headers, data)
                    finally:
                        # Even after a failure: an unreachable registry must not queue every worker here.
                        self._contacted = True
        return self._send(method, url, repository, what, needs, headers, data)

    def _send(
        self,
        method: str,
        url: str,
        repository: str,
        what: str,
        needs: frozenset[str],
        headers: dict[str, str] | None,
        data: bytes | None,
    ) -> requests.Response:
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
        wanted = challenged | wanted_actions(call.resource, call.needs) if call.resource else frozenset()
        if not sent_auth:
            self._obtain_wanted(call.resource, wanted, challenged | call.needs, call.creds, call.repository)
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

    def _obtain_wanted(
        self,
        resource: str,
        wanted: frozenset[str],
        needs: frozenset[str],
        creds: Credentials | None,
        repository: str,
    ) -> CachedToken:
        """A token for `wanted` (pull,push and more); a token server that refuses the whole request instead
        of granting the subset the account holds is asked again for what this request `needs` alone."""
        try:
            return self._obtain(resource, wanted, creds, repository)
        except (AuthenticationFailed, PermissionDenied):
            if not resource or not needs or wanted <= needs:
                raise
            return self._obtain(resource, needs, creds, repository)

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
            # Known realm, new repository: ask for its token now instead of collecting a 401 first.
            wanted = wanted_actions(call.resource, call.needs)
            cached = self._obtain_wanted(call.resource, wanted, call.needs, creds, call.repository)
        elif not cached.fresh(time.monotonic()) or not call.needs <= cached.actions:
            # Expired, or asked without an action this request needs (delete): one token with both.
            wanted = cached.actions | wanted_actions(call.resource, call.needs)
            needed = cached.actions | call.needs
            cached = self._obtain_wanted(call.resource, wanted, needed, creds, call.repository)
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
