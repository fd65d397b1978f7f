"""`registry_client(settings)`: the client for a configured registry (type `oci` or `harbor`)."""

from __future__ import annotations

import time

from listener.registry.base import Observer, RegistryClient
from listener.registry.credentials import DockerConfigKeyring, Keyring
from listener.registry.harbor import HarborClient
from listener.registry.oci import OciClient
from listener.registry.transport import RequestHook, RetryPolicy, Sleep
from pulltag.config import RegistrySettings


def registry_client(
    settings: RegistrySettings,
    *,
    keyring: Keyring | None = None,
    retry: RetryPolicy | None = None,
    observer: Observer | None = None,
    on_request: RequestHook | None = None,
    sleep: Sleep = time.sleep,
) -> RegistryClient:
    """A client for `settings.type`; credentials come from `keyring`, else from `settings.credentials`
    (a dockerconfigjson file, re-read when it changes), else none (anonymous)."""
    if keyring is None and settings.credentials:
        keyring = DockerConfigKeyring(settings.credentials)
    cls: type[RegistryClient]
    if settings.type == "harbor":
        cls = HarborClient
    elif settings.type == "oci":
        cls = OciClient
    else:
        raise ValueError(f"unknown registry type {settings.type!r} for {settings.host}")
    return cls(settings, keyring=keyring, retry=retry, observer=observer, on_request=on_request, sleep=sleep)
