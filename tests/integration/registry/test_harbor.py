"""Harbor client against the fake Harbor built from the API definition."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from listener.registry import (
    AlreadyThere,
    Created,
    HarborClient,
    PermissionDenied,
    PolicyRefused,
    RateLimited,
    RegistryUnavailable,
    RetryPolicy,
    TagConflict,
    TransientError,
    registry_client,
)
from tests.harness.harbor import HARBOR_PASSWORDS, FakeHarbor

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=1.0)


def harbor_client(harbor: FakeHarbor, user: str | None = "robot$pulltag", **kwargs: Any) -> HarborClient:
    client = registry_client(harbor.settings(user), retry=kwargs.pop("retry", FAST), **kwargs)
    assert isinstance(client, HarborClient)
    return client


def test_repository_name_is_encoded_twice(fake_harbor: FakeHarbor) -> None:
    repo = "library/team/sub/app"
    digest = fake_harbor.add_artifact(repo, ["v1"])
    with harbor_client(fake_harbor) as client:
        assert client.create_tag(repo, digest, "deployed_1") == Created(repo, "deployed_1", digest)
    paths = [r.raw_path for r in fake_harbor.recorded()]
    assert paths == [f"/api/v2.0/projects/library/repositories/team%252Fsub%252Fapp/artifacts/{digest}/tags"]


def test_fake_rejects_single_encoded_names_like_harbor(fake_harbor: FakeHarbor) -> None:
    digest = fake_harbor.add_artifact("library/team/app", ["v1"])
    base = f"{fake_harbor.base_url}/api/v2.0/projects/library/repositories"
    assert requests.get(f"{base}/team%2Fapp/artifacts/{digest}", timeout=5).status_code == 404
    answer = requests.get(f"{base}/team%252Fapp/artifacts/{digest}", timeout=5)
    assert answer.status_code == 200 and answer.json()["digest"] == digest
    assert answer.json()["tags"][0]["name"] == "v1"


def test_no_cookie_is_ever_sent_back(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    with harbor_client(fake_harbor) as client:
        client.digest_of(repo, "v1")
        client.tags_on(repo, digest, "d")
        client.create_tag(repo, digest, "deployed_1")
        client.create_tag(repo, digest, "deployed_2")
    recorded = fake_harbor.recorded()
    assert len(recorded) == 4
    assert all("Cookie" not in r.headers for r in recorded)
    assert all(r.headers.get("X-Request-Id") for r in recorded)
    assert len({r.headers["X-Request-Id"] for r in recorded}) == 4


def test_fake_enforces_csrf_once_the_session_cookie_is_replayed(fake_harbor: FakeHarbor) -> None:
    """What would happen with a cookie-keeping session: the write is refused."""
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    session = requests.Session()
    raw = f"robot$pulltag:{HARBOR_PASSWORDS['robot$pulltag']}".encode()
    session.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    project, _, name = repo.partition("/")
    encoded = name.replace("/", "%252F")
    url = f"{fake_harbor.base_url}/api/v2.0/projects/{project}/repositories/{encoded}/artifacts/{digest}"
    assert session.get(url, timeout=5).status_code == 200
    assert "sid" in session.cookies
    refused = session.post(url + "/tags", json={"name": "x1"}, timeout=5)
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["message"] == "CSRF token invalid"


def test_existing_tag_on_the_same_artifact_is_already_there(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1", "deployed_1"])
    with harbor_client(fake_harbor) as client:
        assert client.create_tag(repo, digest, "deployed_1") == AlreadyThere(repo, "deployed_1", digest)
    statuses = [(r.method, r.status) for r in fake_harbor.recorded()]
    assert statuses == [("POST", 409), ("GET", 200)]


def test_existing_tag_on_another_artifact_is_a_conflict(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    first = fake_harbor.add_artifact(repo, ["v1"])
    second = fake_harbor.add_artifact(repo, ["deployed_1"])
    with harbor_client(fake_harbor) as client, pytest.raises(TagConflict) as caught:
        client.create_tag(repo, first, "deployed_1")
    assert caught.value.existing == second
    assert fake_harbor.tag_digest(repo, "deployed_1") == second


def test_proxy_cache_project_refuses_permanently(fake_harbor: FakeHarbor) -> None:
    fake_harbor.add_project("dockerhub-proxy", proxy_cache=True)
    repo = "dockerhub-proxy/library/nginx"
    digest = fake_harbor.add_artifact(repo, ["1.27"])
    with harbor_client(fake_harbor) as client, pytest.raises(PolicyRefused) as caught:
        client.create_tag(repo, digest, "deployed_1")
    assert caught.value.status == 405 and not caught.value.transient
    assert "proxy-cache" in str(caught.value) and repo in str(caught.value)


def test_immutability_rule_refuses_permanently(fake_harbor: FakeHarbor) -> None:
    fake_harbor.add_project("locked", immutable_patterns=["deployed_*"])
    repo = "locked/app"
    digest = fake_harbor.add_artifact(repo, ["v1"])
    with harbor_client(fake_harbor) as client, pytest.raises(PolicyRefused) as caught:
        client.create_tag(repo, digest, "deployed_1")
    assert caught.value.status == 412
    assert "immutab" in str(caught.value)


def test_robot_without_push_permission(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    with harbor_client(fake_harbor, "robot$readonly") as client:
        assert client.digest_of(repo, "v1") == digest
        assert client.check(repo).can_push is False
        with pytest.raises(PermissionDenied) as caught:
            client.create_tag(repo, digest, "deployed_1")
    message = str(caught.value)
    assert fake_harbor.host in message and repo in message and "permission" in message
    assert HARBOR_PASSWORDS["robot$readonly"] not in message


def test_check_with_push_permission_and_anonymously(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    with harbor_client(fake_harbor) as client:
        assert client.check(repo).can_push is True
        assert client.check().authenticated is True
    with harbor_client(fake_harbor, None) as client:
        result = client.check()
    assert result.authenticated is False and result.can_push is None


def test_server_errors_are_retried_with_backoff(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    slept: list[float] = []
    fake_harbor.fail_next(503, 2)
    with harbor_client(fake_harbor, sleep=slept.append) as client:
        assert client.create_tag(repo, digest, "deployed_1") == Created(repo, "deployed_1", digest)
        assert client.requests_sent == 3
    assert len(slept) == 2 and slept[0] <= 0.01 and slept[1] <= 0.02


def test_server_errors_give_up_as_transient(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    fake_harbor.fail_next(500, 10)
    with harbor_client(fake_harbor, sleep=lambda s: None) as client, pytest.raises(TransientError) as caught:
        client.create_tag(repo, digest, "deployed_1")
    assert caught.value.transient and caught.value.status == 500
    assert fake_harbor.host in str(caught.value) and repo in str(caught.value)
    assert fake_harbor.tag_digest(repo, "deployed_1") is None


def test_rate_limit_honours_retry_after(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    slept: list[float] = []
    fake_harbor.fail_next(429, 1, retry_after="1")
    with harbor_client(fake_harbor, sleep=slept.append) as client:
        assert isinstance(client.create_tag(repo, digest, "deployed_1"), Created)
    assert slept == [1.0]


def test_long_retry_after_is_left_to_the_caller(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    slept: list[float] = []
    fake_harbor.fail_next(429, 1, retry_after="3600")
    with harbor_client(fake_harbor, sleep=slept.append) as client, pytest.raises(RateLimited) as caught:
        client.create_tag(repo, digest, "deployed_1")
    assert caught.value.retry_after == 3600 and caught.value.transient and slept == []


def test_tls_with_the_ca_file(fake_harbor_tls: FakeHarbor) -> None:
    repo = fake_harbor_tls.new_repository()
    digest = fake_harbor_tls.add_artifact(repo, ["v1"])
    with harbor_client(fake_harbor_tls) as client:
        assert client.create_tag(repo, digest, "deployed_1") == Created(repo, "deployed_1", digest)
    settings = fake_harbor_tls.settings(ca_file=None)
    with registry_client(settings, retry=FAST) as client, pytest.raises(RegistryUnavailable) as caught:
        client.digest_of(repo, "v1")
    assert "TLS" in str(caught.value)
    assert client.requests_sent == 1  # certificate problems are not retried


def test_new_tag_costs_one_request(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1"])
    with harbor_client(fake_harbor) as client:
        client.create_tag(repo, digest, "deployed_1")
        assert client.requests_sent == 1
