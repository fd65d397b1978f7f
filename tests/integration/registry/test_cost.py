"""Registry cost flat with history, against the real token-auth docker-registry (distribution 2.8).

A new digest is tagged as the listener does it: `tags_on` (is a prefixed tag already on it?) then
`create_tag`. With a warm token that is the tag listing, HEAD, GET and PUT, however many prefixed tags
the repository already holds: tags seen once are remembered, not HEADed per new digest. A new repository
costs its token, asked directly (no 401 per repository), for pull and push at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from listener.registry import OciClient, RetryPolicy, registry_client
from tests.harness.registry import RegistryServer

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.04)
PREFIX = "deployed_"


def oci(registry: RegistryServer, **kwargs: Any) -> OciClient:
    client = registry_client(registry.settings("admin"), retry=FAST, **kwargs)
    assert isinstance(client, OciClient)
    return client


def with_history(registry: RegistryServer, existing: int) -> str:
    """A repository whose older digest carries `existing` prefixed tags (pushed by the harness)."""
    repo = registry.new_repository()
    old = registry.push_image(repo, "v0")
    names = [f"{PREFIX}old_{n}" for n in range(existing)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda tag: registry.push_manifest(repo, tag, old.manifest, old.media_type), names))
    return repo


def tag_new_digest(registry: RegistryServer, client: OciClient, repo: str, name: str) -> int:
    """Push a new digest (not counted), tag it the listener's way; the client's requests for it."""
    digest = registry.push_image(repo).digest
    before = client.requests_sent
    assert client.tags_on(repo, digest, PREFIX) == []
    client.create_tag(repo, digest, name)
    return client.requests_sent - before


@pytest.mark.parametrize("existing", [0, 300])
def test_requests_per_new_tag_do_not_grow_with_history(token_registry: RegistryServer, existing: int) -> None:
    repo = with_history(token_registry, existing)
    with oci(token_registry) as client:
        tag_new_digest(token_registry, client, repo, f"{PREFIX}first")  # first sight: HEADs the history
        costs = [tag_new_digest(token_registry, client, repo, f"{PREFIX}new_{n}") for n in range(5)]
    # listing (one page: distribution 2.8 returns every tag at once), HEAD, GET, PUT
    assert costs == [4] * 5
    assert token_registry.tag_digest(repo, f"{PREFIX}new_4") is not None


def test_a_tag_moved_off_the_digest_by_hand_is_not_reported_from_memory(
    oci_registry: RegistryServer,
) -> None:
    repo = oci_registry.new_repository()
    first = oci_registry.seed_image(repo, "v1")
    second = oci_registry.seed_image(repo, "v2")
    oci_registry.set_tag(repo, f"{PREFIX}byhand", first)
    with oci(oci_registry) as client:
        assert client.tags_on(repo, first, PREFIX) == [f"{PREFIX}byhand"]
        oci_registry.set_tag(repo, f"{PREFIX}byhand", second)  # moved by someone else
        assert client.tags_on(repo, first, PREFIX) == []
        assert client.tags_on(repo, second, PREFIX) == [f"{PREFIX}byhand"]


def test_tags_created_elsewhere_meanwhile_are_found(oci_registry: RegistryServer) -> None:
    repo = oci_registry.new_repository()
    digest = oci_registry.seed_image(repo, "v1")
    with oci(oci_registry) as client:
        assert client.tags_on(repo, digest, PREFIX) == []
        oci_registry.set_tag(repo, f"{PREFIX}other_replica", digest)
        assert client.tags_on(repo, digest, PREFIX) == [f"{PREFIX}other_replica"]


def test_one_challenge_per_registry_and_one_pull_push_token_per_repository(
    token_registry: RegistryServer,
) -> None:
    assert token_registry.token_server is not None
    seen: list[tuple[str, str, int | None]] = []
    repos = [token_registry.new_repository() for _ in range(3)]
    digests = [token_registry.seed_image(repo, "v1") for repo in repos]
    before = len(token_registry.token_server.records())
    with oci(token_registry, on_request=lambda m, u, s: seen.append((m, u, s))) as client:
        costs = []
        for repo, digest in zip(repos, digests, strict=True):
            start = client.requests_sent
            assert client.tags_on(repo, digest, PREFIX) == []
            client.create_tag(repo, digest, f"{PREFIX}1")
            costs.append(client.requests_sent - start)
    assert [s for _, _, s in seen].count(401) == 1  # the first contact only: the realm is learned once
    # then per repository: its token, the listing, HEAD, GET, PUT
    assert costs == [6, 5, 5]
    scopes = [r.scopes for r in token_registry.token_server.records()[before:]]
    assert scopes == [[f"repository:{repo}:pull,push"] for repo in repos]


def test_a_token_server_refusing_push_is_asked_again_for_pull_alone(token_registry: RegistryServer) -> None:
    """Asking pull,push at once must not cost a read-only account its reads where the token server
    refuses the whole request instead of granting the subset."""
    server = token_registry.token_server
    assert server is not None
    repo = token_registry.new_repository()
    digest = token_registry.seed_image(repo, "v1")
    server.refuses_partial = True
    try:
        with registry_client(token_registry.settings("reader"), retry=FAST) as client:
            assert client.digest_of(repo, "v1") == digest
            assert client.tags_on(repo, digest, PREFIX) == []
    finally:
        server.refuses_partial = False


def test_workers_starting_together_meet_the_challenge_once(token_registry: RegistryServer) -> None:
    assert token_registry.token_server is not None
    repo = token_registry.new_repository()
    digest = token_registry.seed_image(repo, "v1")
    statuses: list[int | None] = []
    before = len(token_registry.token_server.records())
    with (
        oci(token_registry, on_request=lambda m, u, s: statuses.append(s)) as client,
        ThreadPoolExecutor(6) as pool,
    ):
        assert list(pool.map(lambda _: client.digest_of(repo, "v1"), range(6))) == [digest] * 6
    assert statuses.count(401) == 1
    assert len(token_registry.token_server.records()) - before == 1
