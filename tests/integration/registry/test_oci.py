"""OCI Distribution client against a real docker-registry (distribution 2.8)."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from listener.registry import (
    AlreadyThere,
    AuthenticationFailed,
    Created,
    NotFound,
    OciClient,
    PermissionDenied,
    RegistryUnavailable,
    RetryPolicy,
    registry_client,
)
from listener.registry.credentials import Credentials, DockerConfigKeyring
from pulltag.config import RegistrySettings
from tests.harness.dockerconfig import write_docker_config
from tests.harness.procs import free_port
from tests.harness.registry import REFRESH_TOKENS, RegistryServer

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


@pytest.fixture(params=["oci_registry", "htpasswd_registry", "token_registry"])
def real_registry(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def oci(registry: RegistryServer, user: str | None = "admin", **kwargs: Any) -> OciClient:
    client = registry_client(registry.settings(user), retry=kwargs.pop("retry", FAST), **kwargs)
    assert isinstance(client, OciClient)
    return client


@pytest.mark.parametrize(
    ("kind", "multi"),
    [("oci", False), ("docker", False), ("oci", True), ("docker", True)],
    ids=["oci-manifest", "docker-schema2", "oci-index", "docker-manifest-list"],
)
def test_retag_keeps_bytes_digest_and_media_type(
    real_registry: RegistryServer, kind: Any, multi: bool
) -> None:
    repo = real_registry.new_repository()
    pushed = (
        real_registry.push_index(repo, "v1", kind=kind)
        if multi
        else real_registry.push_image(repo, "v1", kind=kind)
    )
    with oci(real_registry) as client:
        assert client.create_tag(repo, pushed.digest, "deployed_prod_1") == Created(
            repo, "deployed_prod_1", pushed.digest
        )
    found = real_registry.get_manifest(repo, "deployed_prod_1")
    assert found is not None
    body, content_type, digest = found
    assert body == pushed.manifest
    assert digest == pushed.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    assert content_type == pushed.media_type
    if multi:
        # the children are untouched and still resolvable by digest
        for child in pushed.children:
            assert real_registry.get_manifest(repo, child) is not None


def test_three_hundred_tags_are_listed(htpasswd_registry: RegistryServer) -> None:
    registry = htpasswd_registry
    repo = registry.new_repository()
    first = registry.push_image(repo, "v1")
    second = registry.push_image(repo, "v2")
    names = [f"t{n:03d}" for n in range(296)]
    found = registry.get_manifest(repo, first.digest)
    assert found is not None
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda tag: registry.push_manifest(repo, tag, found[0], found[1]), names))
    registry.set_tag(repo, "deployed_a", first.digest)
    registry.set_tag(repo, "deployed_b", second.digest)
    settings = registry.settings("admin")
    assert settings.credentials is not None
    with OciClient(
        settings, keyring=DockerConfigKeyring(settings.credentials), retry=FAST, page_size=50
    ) as client:
        tags = client.list_tags(repo)
        assert len(tags) == 300
        assert set(tags) == {*names, "v1", "v2", "deployed_a", "deployed_b"}
        before = client.requests_sent
        assert client.tags_on(repo, second.digest, "deployed") == ["deployed_b"]
        # one listing (distribution 2.8 returns everything at once) + one HEAD per candidate
        assert client.requests_sent - before == 1 + 2


def test_one_token_asks_for_pull_and_push(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    pushed = token_registry.push_image(repo, "v1")
    assert token_registry.token_server is not None
    before = len(token_registry.token_server.records())
    with oci(token_registry) as client:
        assert client.digest_of(repo, "v1") == pushed.digest  # caches a pull,push token
        assert isinstance(client.create_tag(repo, pushed.digest, "deployed_1"), Created)
        requests_after_first = client.requests_sent
        assert isinstance(client.create_tag(repo, pushed.digest, "deployed_2"), Created)
        assert client.requests_sent - requests_after_first == 3
    scopes = [r.scopes for r in token_registry.token_server.records()[before:] if r.user == "admin"]
    assert scopes == [[f"repository:{repo}:pull,push"]]
    assert token_registry.tag_digest(repo, "deployed_2") == pushed.digest


def test_user_without_push_right_gets_a_permanent_error(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    pushed = token_registry.push_image(repo, "v1")
    with oci(token_registry, "reader") as client:
        assert client.digest_of(repo, "v1") == pushed.digest  # pulling is allowed
        assert client.check(repo).can_push is False
        with pytest.raises(PermissionDenied) as caught:
            client.create_tag(repo, pushed.digest, "deployed_1")
    assert not caught.value.transient
    message = str(caught.value)
    assert token_registry.host in message and repo in message and "push" in message
    assert PASSWORD_NOT_IN(message)
    assert token_registry.tag_digest(repo, "deployed_1") is None


def PASSWORD_NOT_IN(text: str) -> bool:
    from tests.harness.registry import PASSWORDS

    return all(secret not in text for secret in PASSWORDS.values())


def test_check_reports_push_permission_from_the_token(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    with oci(token_registry) as client:
        result = client.check(repo)
    assert result.authenticated and result.can_push is True


def test_identity_token_uses_the_oauth2_refresh_grant(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    pushed = token_registry.push_image(repo, "v1")
    assert token_registry.token_server is not None
    refresh = next(iter(REFRESH_TOKENS))
    path = token_registry.identity_credentials_file(refresh)
    settings = token_registry.settings(None, credentials=str(path))
    before = len(token_registry.token_server.records())
    with registry_client(settings, retry=FAST) as client:
        assert isinstance(client.create_tag(repo, pushed.digest, "deployed_1"), Created)
    records = token_registry.token_server.records()[before:]
    assert records and all(r.method == "POST" and r.user == "admin" for r in records)
    assert token_registry.tag_digest(repo, "deployed_1") == pushed.digest


def test_expired_token_is_renewed_before_use(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    pushed = token_registry.push_image(repo, "v1")
    assert token_registry.token_server is not None
    with oci(token_registry) as client:
        client.create_tag(repo, pushed.digest, "warm")
        for key in list(client.auth.tokens._tokens):
            client.auth.tokens._tokens[key].expires_at = time.monotonic() - 1
        before_tokens = len(token_registry.token_server.records())
        before = client.requests_sent
        assert isinstance(client.create_tag(repo, pushed.digest, "deployed_1"), Created)
        # one token request (with the full pull,push scope kept), then HEAD, GET, PUT: no 401
        assert client.requests_sent - before == 4
    new = token_registry.token_server.records()[before_tokens:]
    assert [r.scopes for r in new] == [[f"repository:{repo}:pull,push"]]


def test_rejected_token_is_replaced_once(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    pushed = token_registry.push_image(repo, "v1")
    with oci(token_registry) as client:
        client.create_tag(repo, pushed.digest, "warm")
        for key in list(client.auth.tokens._tokens):
            client.auth.tokens._tokens[key].token = "not.a-valid.token"
        assert isinstance(client.create_tag(repo, pushed.digest, "deployed_1"), Created)


def test_wrong_password_at_the_token_server(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    token_registry.push_image(repo, "v1")
    with oci(token_registry, "intruder") as client, pytest.raises(AuthenticationFailed) as caught:
        client.digest_of(repo, "v1")
    assert "token server" in str(caught.value) and "wrong-password" not in str(caught.value)


@pytest.mark.parametrize("fixture", ["htpasswd_registry", "token_registry"])
def test_no_credentials_for_a_protected_registry(request: pytest.FixtureRequest, fixture: str) -> None:
    registry: RegistryServer = request.getfixturevalue(fixture)
    repo = registry.new_repository()
    registry.push_image(repo, "v1")
    with oci(registry, None) as client, pytest.raises(AuthenticationFailed):
        client.create_tag(repo, "sha256:" + "1" * 64, "deployed_1")


def test_credentials_matched_by_repository_path(htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    """A more specific key (host/path) wins over the host key, as in the kubelet's keyring."""
    registry = htpasswd_registry
    repo = registry.new_repository("team/app")
    pushed = registry.push_image(repo, "v1")
    path = write_docker_config(
        tmp_path / "config.json",
        {
            registry.host: Credentials("admin", "wrong-password"),
            f"http://{registry.host}/v2/team": Credentials("admin", "admin-secret-pw"),
        },
    )
    with registry_client(registry.settings(None, credentials=str(path)), retry=FAST) as client:
        assert client.create_tag(repo, pushed.digest, "deployed_1") == Created(
            repo, "deployed_1", pushed.digest
        )
        other = registry.new_repository("other/app")
        registry.push_image(other, "v1")
        with pytest.raises(AuthenticationFailed):
            client.digest_of(other, "v1")


def test_credentials_file_change_is_picked_up(htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    registry = htpasswd_registry
    repo = registry.new_repository()
    pushed = registry.push_image(repo, "v1")
    path = write_docker_config(tmp_path / "c.json", {registry.host: Credentials("admin", "wrong-password")})
    with registry_client(registry.settings(None, credentials=str(path)), retry=FAST) as client:
        with pytest.raises(AuthenticationFailed):
            client.digest_of(repo, "v1")
        write_docker_config(tmp_path / "new.json", {registry.host: Credentials("admin", "admin-secret-pw")})
        (tmp_path / "new.json").replace(path)  # atomic swap, new inode
        assert client.digest_of(repo, "v1") == pushed.digest


def test_unreachable_registry_is_transient_after_bounded_retries() -> None:
    port = free_port()
    slept: list[float] = []
    settings = RegistrySettings(host=f"127.0.0.1:{port}", insecure=True, connect_timeout=0.5)
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.04)
    with registry_client(settings, retry=policy, sleep=slept.append) as client:
        with pytest.raises(RegistryUnavailable) as caught:
            client.digest_of("team/app", "v1")
        assert client.requests_sent == 3
    assert caught.value.transient
    assert len(slept) == 2 and all(0 < s <= 0.04 for s in slept)
    assert f"127.0.0.1:{port}" in str(caught.value) and "team/app" in str(caught.value)


def test_concurrent_tagging_from_one_client(token_registry: RegistryServer) -> None:
    repo = token_registry.new_repository()
    pushed = token_registry.push_image(repo, "v1")
    # distribution answers a manifest read racing a tag write with a 500 now and then (1 run in 6 failed
    # with FAST's single retry): the listener's own retry count, with short delays, is what rides it out.
    listener_retries = RetryPolicy(attempts=RetryPolicy().attempts, base_delay=0.01, max_delay=0.04)
    with oci(token_registry, retry=listener_retries) as client, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda n: client.create_tag(repo, pushed.digest, f"c{n % 3}"), range(12)))
    assert {r.tag for r in results} == {"c0", "c1", "c2"}
    assert all(isinstance(r, Created | AlreadyThere) for r in results)
    for n in range(3):
        assert token_registry.tag_digest(repo, f"c{n}") == pushed.digest


def test_manifest_body_is_sent_back_unchanged_even_if_not_canonical(oci_registry: RegistryServer) -> None:
    repo = oci_registry.new_repository()
    pushed = oci_registry.push_image(repo, "v1")
    assert b"\n   " in pushed.manifest  # indented JSON: re-serialising would change the digest
    assert json.loads(pushed.manifest)["schemaVersion"] == 2
    with oci(oci_registry) as client:
        client.create_tag(repo, pushed.digest, "deployed_1")
    found = oci_registry.get_manifest(repo, "deployed_1")
    assert found is not None and found[0] == pushed.manifest


def test_an_image_pushed_by_digest_only_is_tagged(real_registry: RegistryServer) -> None:
    """distribution answers the tag listing of a repository with manifests but no tag yet with 404
    NAME_UNKNOWN: that is "no tags", not a failure (an image deployed by digest must still be tagged)."""
    repo = real_registry.new_repository()
    pushed = real_registry.push_image(repo, None)
    with oci(real_registry) as client:
        assert client.tags_on(repo, pushed.digest, "deployed_") == []
        assert client.create_tag(repo, pushed.digest, "deployed_prod_1") == Created(
            repo, "deployed_prod_1", pushed.digest
        )
        assert client.tags_on(repo, pushed.digest, "deployed_") == ["deployed_prod_1"]
    with oci(real_registry) as client, pytest.raises(NotFound):
        client.create_tag(real_registry.new_repository(), pushed.digest, "deployed_prod_1")
