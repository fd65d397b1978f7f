"""`pulltag tag IMAGE_REF TAG` and `pulltag registry check`: the registry clients from the command line.

Both use the configured registries (and their credentials) exactly as the listener does. Errors are the
clients' typed errors, whose messages name the registry, the repository and what was refused, and never a
credential. Exit codes: 0 done, 1 a registry refused or failed, 2 the arguments or the configuration.
"""

from __future__ import annotations

import argparse
import sys

from listener.registry.credentials import CredentialsError
from listener.registry.errors import RegistryError
from listener.registry.factory import registry_client
from listener.registry.transport import RetryPolicy
from pulltag.config import Settings
from pulltag.images import InvalidReference, is_valid_tag, parse_reference

EXIT_FAILED = 1
EXIT_USAGE = 2
# Interactive commands: fewer retries than the listener, so a dead registry answers quickly.
CLI_RETRY = RetryPolicy(attempts=2, base_delay=0.5, max_delay=2.0, max_retry_after=5.0)


def _error(text: str) -> None:
    print(f"pulltag: {text}", file=sys.stderr)


def run_tag(args: argparse.Namespace, settings: Settings) -> int:
    try:
        ref = parse_reference(args.image)
    except InvalidReference as err:
        _error(str(err))
        return EXIT_USAGE
    if not is_valid_tag(args.tag):
        _error(f"invalid tag {args.tag!r}: must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")
        return EXIT_USAGE
    registry = settings.registry_for(ref.registry)
    if registry is None:
        _error(f"registry {ref.registry} is not configured (registries in the configuration file)")
        return EXIT_USAGE
    try:
        with registry_client(registry, retry=CLI_RETRY) as client:
            digest = ref.digest or client.digest_of(ref.repository, ref.tag or "latest")
            result = client.create_tag(ref.repository, digest, args.tag)
    except (RegistryError, CredentialsError) as err:
        _error(str(err))
        return EXIT_FAILED
    verb = "created" if result.created else "already there"
    print(f"{ref.registry}/{result.repository}@{result.digest}: tag {result.tag} {verb}")
    return 0


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.registries:
        _error("no registries configured: nothing to check")
        return EXIT_USAGE
    repository: str | None = getattr(args, "repository", None)
    failed = False
    for registry in settings.registries:
        try:
            with registry_client(registry, retry=CLI_RETRY) as client:
                result = client.check(repository)
        except (RegistryError, CredentialsError) as err:
            print(f"{registry.host} ({registry.type}): FAILED: {err}")
            failed = True
            continue
        auth = "authenticated" if result.authenticated else "anonymous"
        push = {True: "yes", False: "no", None: "unknown"}[result.can_push]
        detail = f" ({result.detail})" if result.detail else ""
        print(f"{registry.host} ({registry.type}): reachable, {auth}, push allowed: {push}{detail}")
        if result.can_push is False:
            failed = True
    return EXIT_FAILED if failed else 0
