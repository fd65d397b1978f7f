"""WWW-Authenticate challenges (RFC 7235) and token scopes, as registries send and expect them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import requests

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
