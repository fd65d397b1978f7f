"""The registry contract, run against every backend: anonymous, htpasswd and token docker-registry,
and the fake Harbor."""

from __future__ import annotations

from typing import Any

import pytest

from listener.registry import (
    AlreadyThere,
    AuthenticationFailed,
    Created,
    InvalidName,
    NotFound,
    RegistryClient,
    RetryPolicy,
    TagConflict,
    registry_client,
)

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
MISSING = "sha256:" + "0" * 64


def client_for(backend: Any, user: str | None = "default", **kwargs: Any) -> RegistryClient:
    settings = backend.settings() if user == "default" else backend.settings(user)
    return registry_client(settings, retry=FAST, **kwargs)


def test_create_tag_then_already_there(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    digest = registry_backend.seed_image(repo, "v1")
    with client_for(registry_backend) as client:
        assert client.create_tag(repo, digest, "deployed_prod_1") == Created(repo, "deployed_prod_1", digest)
        assert registry_backend.tag_digest(repo, "deployed_prod_1") == digest
        again = client.create_tag(repo, digest, "deployed_prod_1")
        assert again == AlreadyThere(repo, "deployed_prod_1", digest)
        assert registry_backend.tag_digest(repo, "v1") == digest


def test_digest_of_tag_and_of_digest(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    digest = registry_backend.seed_image(repo, "v1")
    with client_for(registry_backend) as client:
        assert client.digest_of(repo, "v1") == digest
        assert client.digest_of(repo, digest) == digest


def test_unknown_tag_is_a_permanent_not_found_naming_registry_and_repository(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    registry_backend.seed_image(repo, "v1")
    with client_for(registry_backend) as client, pytest.raises(NotFound) as caught:
        client.digest_of(repo, "nope")
    assert not caught.value.transient
    assert registry_backend.host in str(caught.value)
    assert repo in str(caught.value)


def test_tagging_a_missing_digest_fails_permanently(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    registry_backend.seed_image(repo, "v1")
    with client_for(registry_backend) as client, pytest.raises(NotFound) as caught:
        client.create_tag(repo, MISSING, "deployed_x")
    assert not caught.value.transient
    assert registry_backend.tag_digest(repo, "deployed_x") is None


def test_tags_on_filters_by_prefix_and_digest(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    first = registry_backend.seed_image(repo, "v1")
    second = registry_backend.seed_image(repo, "v2")
    registry_backend.set_tag(repo, "deployed_prod_a", first)
    registry_backend.set_tag(repo, "deployed_prod_b", first)
    registry_backend.set_tag(repo, "deployed_prod_c", second)
    registry_backend.set_tag(repo, "other_x", first)
    with client_for(registry_backend) as client:
        assert client.tags_on(repo, first, "deployed") == ["deployed_prod_a", "deployed_prod_b"]
        assert client.tags_on(repo, second, "deployed_") == ["deployed_prod_c"]
        assert client.tags_on(repo, second, "zzz") == []
        assert client.tags_on(repo, first, "") == ["deployed_prod_a", "deployed_prod_b", "other_x", "v1"]


def test_tag_pointing_elsewhere_is_a_conflict_and_is_not_moved(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    first = registry_backend.seed_image(repo, "v1")
    second = registry_backend.seed_image(repo, "v2")
    registry_backend.set_tag(repo, "deployed_prod_1", second)
    with client_for(registry_backend) as client, pytest.raises(TagConflict) as caught:
        client.create_tag(repo, first, "deployed_prod_1")
    assert caught.value.existing == second
    assert caught.value.wanted == first
    assert not caught.value.transient
    assert registry_backend.tag_digest(repo, "deployed_prod_1") == second


@pytest.mark.parametrize(
    ("repository", "tag", "digest"),
    [
        ("team/../etc", "t", None),
        ("team%2Fapp", "t", None),
        ("team/app?x=1", "t", None),
        ("team/app#frag", "t", None),
        ("Team/App", "t", None),
        ("team/äpp", "t", None),
        ("team//app", "t", None),
        ("/team/app", "t", None),
        ("team/app", "../v1", None),
        ("team/app", "v1?x", None),
        ("team/app", ".hidden", None),
        ("team/app", "t" * 129, None),
        ("team/app", "t", "sha256:abc"),
        ("team/app", "t", "sha256:" + "A" * 64),
        ("team/app", "t", "md5:" + "0" * 32),
    ],
)
def test_invalid_names_are_refused_before_anything_is_sent(
    registry_backend: Any, repository: str, tag: str, digest: str | None
) -> None:
    if registry_backend.type == "harbor":
        repository = "library/" + repository
    with client_for(registry_backend) as client:
        with pytest.raises(InvalidName) as caught:
            client.create_tag(repository, digest or MISSING, tag)
        assert isinstance(caught.value, ValueError)
        with pytest.raises(InvalidName):
            client.tags_on(repository, digest or MISSING, tag)
        assert client.requests_sent == 0


def test_check_passes_with_good_credentials(registry_backend: Any) -> None:
    with client_for(registry_backend) as client:
        result = client.check()
    assert result.registry == registry_backend.host
    assert result.authenticated is (getattr(registry_backend, "mode", "auth") != "anonymous")


def test_wrong_credentials_are_a_permanent_error_without_the_secret(registry_backend: Any) -> None:
    if getattr(registry_backend, "mode", None) == "anonymous":
        pytest.skip("an anonymous registry accepts everyone")
    repo = registry_backend.new_repository()
    digest = registry_backend.seed_image(repo, "v1")
    settings = registry_backend.settings("intruder")
    with registry_client(settings, retry=FAST) as client:
        with pytest.raises(AuthenticationFailed) as caught:
            client.create_tag(repo, digest, "deployed_1")
        with pytest.raises(AuthenticationFailed):
            client.check()
    assert not caught.value.transient
    assert "wrong-password" not in str(caught.value)
    assert registry_backend.host in str(caught.value)
    assert registry_backend.tag_digest(repo, "deployed_1") is None


def test_new_tag_request_count(registry_backend: Any) -> None:
    """OCI: HEAD tag, GET by digest, PUT (token cached); Harbor: at most 2."""
    repo = registry_backend.new_repository()
    digest = registry_backend.seed_image(repo, "v1")
    budget = 2 if registry_backend.type == "harbor" else 3
    with client_for(registry_backend) as client:
        client.create_tag(repo, digest, "warmup")  # authenticates, caches the token
        counts = []
        for n in range(3):
            before = client.requests_sent
            assert isinstance(client.create_tag(repo, digest, f"deployed_{n}"), Created)
            counts.append(client.requests_sent - before)
        before = client.requests_sent
        assert isinstance(client.create_tag(repo, digest, "deployed_0"), AlreadyThere)
        already = client.requests_sent - before
    assert max(counts) <= budget, counts
    assert already <= budget


def test_observer_sees_each_operation(registry_backend: Any) -> None:
    repo = registry_backend.new_repository()
    digest = registry_backend.seed_image(repo, "v1")
    seen: list[tuple[str, str, float]] = []
    hooked: list[tuple[str, str, int | None]] = []
    settings = registry_backend.settings()
    with registry_client(
        settings,
        retry=FAST,
        observer=lambda registry, op, s: seen.append((registry, op, s)),
        on_request=lambda *a: hooked.append(a),
    ) as client:
        client.digest_of(repo, "v1")
        client.tags_on(repo, digest, "x")
        client.create_tag(repo, digest, "x1")
        assert len(hooked) == client.requests_sent
    assert [op for _, op, _ in seen] == ["digest_of", "tags_on", "create_tag"]
    assert {registry for registry, _, _ in seen} == {settings.host}
    assert all(s >= 0 for _, _, s in seen)
