"""Pure helpers: challenges, scopes, Link headers, Retry-After, Harbor paths, names."""

from __future__ import annotations

import base64
import json

import pytest

from listener.registry.challenges import parse_challenges, parse_scope, render_scope
from listener.registry.errors import InvalidName
from listener.registry.harbor import artifact_path, split_repository
from listener.registry.names import check_repository
from listener.registry.oci import ACCEPT_MANIFESTS, api_base_url, compute_digest, next_link
from listener.registry.tokens import token_access
from listener.registry.transport import RetryPolicy, retry_after_seconds


def test_bearer_challenge_with_quoted_commas() -> None:
    [challenge] = parse_challenges(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.example.com"
    assert challenge.scopes == ["repository:team/app:pull,push"]
    assert challenge.error == "insufficient_scope"


def test_several_challenges_and_unquoted_values() -> None:
    challenges = parse_challenges('Basic realm="Registry Realm", Bearer realm=https://a/t,service=svc')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].realm == "Registry Realm"
    assert challenges[1].params == {"realm": "https://a/t", "service": "svc"}


def test_several_scopes_in_one_challenge() -> None:
    [challenge] = parse_challenges('Bearer realm="r",scope="repository:a:pull repository:b:pull,push"')
    assert challenge.scopes == ["repository:a:pull", "repository:b:pull,push"]


def test_scopes() -> None:
    assert parse_scope("repository:team/app:pull,push") == (
        "repository:team/app",
        frozenset({"pull", "push"}),
    )
    assert parse_scope("repository:localhost:5000/app:pull") == (
        "repository:localhost:5000/app",
        frozenset({"pull"}),
    )
    assert parse_scope("nonsense") is None
    assert render_scope("repository:x", {"push", "pull"}) == "repository:x:pull,push"


def test_token_access_reads_jwt_claims_only_when_present() -> None:
    claims = {"access": [{"type": "repository", "name": "x", "actions": ["pull"]}]}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert token_access(f"e30.{payload}.sig") == claims["access"]
    assert token_access("opaque-token") is None


def test_link_header() -> None:
    assert next_link('</v2/x/tags/list?n=100&last=b>; rel="next"') == "/v2/x/tags/list?n=100&last=b"
    assert next_link("<https://r/v2/x/tags/list?last=c>; rel=next") == "https://r/v2/x/tags/list?last=c"
    assert next_link('</v2/x/tags/list?last=a>; rel="prev"') is None
    assert next_link(None) is None


def test_retry_after() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0)
    delays = [policy.backoff(n) for n in range(10)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert all(0.5 <= d <= 1.0 for d in delays[5:])
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_docker_hub_is_served_at_registry_1() -> None:
    assert api_base_url("docker.io", False) == "https://registry-1.docker.io"
    assert api_base_url("index.docker.io", False) == "https://registry-1.docker.io"
    assert api_base_url("127.0.0.1:5000", True) == "http://127.0.0.1:5000"
    assert api_base_url("reg.example.com", False) == "https://reg.example.com"


def test_accept_lists_all_four_manifest_types() -> None:
    for media_type in (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ):
        assert media_type in ACCEPT_MANIFESTS


def test_compute_digest() -> None:
    assert compute_digest("sha256:" + "0" * 64, b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_harbor_paths_double_encode_the_repository() -> None:
    assert split_repository("h", "library/a/b") == ("library", "a/b")
    assert artifact_path("library", "a/b", "sha256:abc", "/tags") == (
        "/api/v2.0/projects/library/repositories/a%252Fb/artifacts/sha256:abc/tags"
    )
    assert artifact_path("p", "app", "v1") == "/api/v2.0/projects/p/repositories/app/artifacts/v1"
    with pytest.raises(InvalidName):
        split_repository("h", "noproject")


@pytest.mark.parametrize(
    "name",
    ["..", "a/..", "a%2Fb", "a?b", "a#b", "A", "ä", "a//b", "a/", "", "a b", "a\nb", "x" * 256, "a:b"],
)
def test_repository_grammar(name: str) -> None:
    with pytest.raises(InvalidName) as caught:
        check_repository("reg.example.com", name)
    assert "reg.example.com" in str(caught.value)
