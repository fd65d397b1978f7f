"""Credentials for tests: dockerconfigjson files as Kubernetes mounts them, and a fixed keyring."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

from listener.registry.credentials import Credentials


def write_docker_config(path: str | os.PathLike[str], entries: Mapping[str, Credentials]) -> Path:
    """Write a dockerconfigjson file; `auth` holds `user:password`."""
    auths: dict[str, dict[str, str]] = {}
    for host, creds in entries.items():
        entry: dict[str, str] = {}
        if creds.has_basic:
            raw = f"{creds.username}:{creds.password}".encode()
            entry["auth"] = base64.b64encode(raw).decode("ascii")
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
        auths[host] = entry
    target = Path(path)
    target.write_text(json.dumps({"auths": auths}, indent=2))
    return target


class StaticKeyring:
    """The same credentials for every host and repository (a `Keyring`)."""

    source = "a fixed test keyring"

    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials

    def lookup(self, host: str, repository: str = "") -> Credentials | None:
        return self._credentials

    def keys(self) -> list[str]:
        return ["*"] if self._credentials is not None else []
