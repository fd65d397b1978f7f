"""Delete by tag only, one contract over every backend: the real docker-registry (distribution 2.8) with
`storage.delete` on and off, anonymous and with token auth, and the fake Harbor.

distribution 2.8 never deletes a tag by its name (405 UNSUPPORTED with deletion off; 400 DIGEST_INVALID
with it on): the outcome is "unsupported" and the image and all its tags stay, checked through the
registry's own API. Harbor deletes through its tag API. Everywhere: a tag on another digest is "moved"
and left, a missing tag is "absent".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from listener.registry import (
    AuthenticationFailed,
    InvalidName,
    PermissionDenied,
    RegistryClient,
    RetryPolicy,
    TransientError,
    registry_client,
)
from pulltag.config import RegistrySettings
from tests.harness.harbor import FakeHarbor
from tests.harness.procs import MissingBinary
from tests.harness.registry import RegistryServer

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
DELETING_BACKENDS = ("oci_registry", "registry_without_delete", "token_registry", "fake_harbor")


@pytest.fixture(scope="module")
def registry_without_delete(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """docker-registry with `storage.delete.enabled: false` (distribution's default)."""
    try:
        server = RegistryServer(
            tmp_path_factory.mktemp("registry-nodelete"), "anonymous", delete_enabled=False
        ).start()
    except MissingBinary as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=DELETING_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def client_for(backend: Any, user: str | None = "default") -> RegistryClient:
    settings = backend.settings() if user == "default" else backend.settings(user)
    return registry_client(settings, retry=FAST)


def deletes_tags(backend: Any) -> bool:
    return isinstance(backend, FakeHarbor)


def tags_of(backend: Any, repository: str, digest: str) -> list[str]:
    """The tags on `digest`, read through the registry's own API (not pulltag's client)."""
    if isinstance(backend, FakeHarbor):
        return backend.tags_of(repository, digest)
    assert isinstance(backend, RegistryServer)
    return sorted(t for t in backend.list_tags(repository) if backend.tag_digest(repository, t) == digest)


# ---------------------------------------------------------------------------------------------------
# The contract, on every backend


def test_a_tag_on_its_digest_is_released_or_refused_and_nothing_else_goes(backend: Any) -> None:
    repo = backend.new_repository()
    digest = backend.seed_image(repo, "v1")
    other = backend.seed_image(repo, "v2")
    backend.set_tag(repo, "deployed_a", digest)
    backend.set_tag(repo, "deployed_b", digest)
    with client_for(backend) as client:
        outcome = client.delete_tag(repo, "deployed_a", digest)
    if deletes_tags(backend):
        assert outcome == "released"
        assert tags_of(backend, repo, digest) == ["deployed_b", "v1"]
    else:
        # distribution 2.8 refuses; a fallback to deleting by digest would take the image and every tag
        # on it (with storage.delete on, it would succeed): all of it must still be there.
        assert outcome == "unsupported"
        assert tags_of(backend, repo, digest) == ["deployed_a", "deployed_b", "v1"]
        assert backend.get_manifest(repo, digest) is not None
    assert tags_of(backend, repo, other) == ["v2"]


def test_a_moved_tag_is_left_alone(backend: Any) -> None:
    repo = backend.new_repository()
    recorded = backend.seed_image(repo, "v1")
    now = backend.seed_image(repo, "v2")
    backend.set_tag(repo, "deployed_a", now)
    with client_for(backend) as client:
        assert client.delete_tag(repo, "deployed_a", recorded) == "moved"
    assert backend.tag_digest(repo, "deployed_a") == now
    assert tags_of(backend, repo, now) == ["deployed_a", "v2"]
    assert tags_of(backend, repo, recorded) == ["v1"]


def test_a_missing_tag_is_absent(backend: Any) -> None:
    repo = backend.new_repository()
    digest = backend.seed_image(repo, "v1")
    with client_for(backend) as client:
        assert client.delete_tag(repo, "deployed_gone", digest) == "absent"
    assert tags_of(backend, repo, digest) == ["v1"]


def test_a_released_tag_is_then_absent(backend: Any) -> None:
    repo = backend.new_repository()
    digest = backend.seed_image(repo, "v1")
    backend.set_tag(repo, "deployed_a", digest)
    with client_for(backend) as client:
        first = client.delete_tag(repo, "deployed_a", digest)
        second = client.delete_tag(repo, "deployed_a", digest)
    assert (first, second) == (("released", "absent") if deletes_tags(backend) else ("unsupported",) * 2)


def test_a_digest_is_never_accepted_as_the_tag(backend: Any) -> None:
    repo = backend.new_repository()
    digest = backend.seed_image(repo, "v1")
    with client_for(backend) as client, pytest.raises(ValueError):
        client.delete_tag(repo, digest, digest)
    assert tags_of(backend, repo, digest) == ["v1"]


@pytest.mark.parametrize(
    ("repository", "tag", "digest"),
    [
        ("team/../admin", "deployed_a", None),
        ("team/app?n=1", "deployed_a", None),
        (None, "../x", None),
        (None, "x/y", None),
        (None, "x%2Fy", None),
        (None, "x\r\nX-Injected: 1", None),
        (None, "deployed_a", "sha256:../../x"),
        (None, "deployed_a", "sha256:" + "a" * 63),
    ],
)
def test_escaping_names_are_refused_before_anything_is_sent(
    backend: Any, repository: str | None, tag: str, digest: str | None
) -> None:
    repo = backend.new_repository()
    seeded = backend.seed_image(repo, "v1")
    with client_for(backend) as client, pytest.raises(InvalidName) as caught:
        client.delete_tag(repository or repo, tag, digest or seeded)
    assert client.requests_sent == 0 and "nothing was sent" in str(caught.value)
    assert tags_of(backend, repo, seeded) == ["v1"]


# ---------------------------------------------------------------------------------------------------
# distribution 2.8


@pytest.mark.parametrize("fixture", ["oci_registry", "registry_without_delete"])
def test_distribution_refuses_tag_deletion_with_and_without_storage_delete(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    registry: RegistryServer = request.getfixturevalue(fixture)
    repo = registry.new_repository()
    pushed = registry.push_index(repo, "v1")
    registry.set_tag(repo, "deployed_a", pushed.digest)
    with client_for(registry) as client:
        assert client.delete_tag(repo, "deployed_a", pushed.digest) == "unsupported"
    assert sorted(registry.list_tags(repo)) == ["deployed_a", "v1"]
    for reference in (pushed.digest, *pushed.children):
        assert registry.get_manifest(repo, reference) is not None


def test_a_refusal_is_remembered_for_the_registry(registry_without_delete: RegistryServer) -> None:
    registry = registry_without_delete
    repo = registry.new_repository()
    digest = registry.seed_image(repo, "v1")
    registry.set_tag(repo, "deployed_a", digest)
    registry.set_tag(repo, "deployed_b", digest)
    with client_for(registry) as client:
        assert client.delete_tag(repo, "deployed_a", digest) == "unsupported"
        before = client.requests_sent
        assert client.delete_tag(repo, "deployed_b", digest) == "unsupported"
        assert client.requests_sent == before
    assert sorted(registry.list_tags(repo)) == ["deployed_a", "deployed_b", "v1"]


def test_token_auth_asks_for_the_delete_action(token_registry: RegistryServer) -> None:
    registry = token_registry
    assert registry.token_server is not None
    repo = registry.new_repository()
    digest = registry.seed_image(repo, "v1")
    registry.set_tag(repo, "deployed_a", digest)
    before = len(registry.token_server.records())
    with client_for(registry) as client:
        assert client.delete_tag(repo, "deployed_a", digest) == "unsupported"
    scopes = [r.scopes for r in registry.token_server.records()[before:]]
    assert [f"repository:{repo}:delete,pull,push"] in scopes
    assert sorted(registry.list_tags(repo)) == ["deployed_a", "v1"]


def test_token_user_without_delete_right_is_refused(token_registry: RegistryServer) -> None:
    registry = token_registry
    repo = registry.new_repository()
    digest = registry.seed_image(repo, "v1")
    registry.set_tag(repo, "deployed_a", digest)
    with client_for(registry, "reader") as client, pytest.raises(PermissionDenied):
        client.delete_tag(repo, "deployed_a", digest)
    assert sorted(registry.list_tags(repo)) == ["deployed_a", "v1"]


# ---------------------------------------------------------------------------------------------------
# Harbor


def test_harbor_deletes_through_its_tag_api(fake_harbor: FakeHarbor) -> None:
    repo = "library/team/sub/app"
    digest = fake_harbor.add_artifact(repo, ["v1", "deployed_a"])
    with client_for(fake_harbor) as client:
        assert client.delete_tag(repo, "deployed_a", digest) == "released"
    deletes = [r for r in fake_harbor.recorded() if r.method == "DELETE"]
    assert [r.raw_path for r in deletes] == [
        f"/api/v2.0/projects/library/repositories/team%252Fsub%252Fapp/artifacts/{digest}/tags/deployed_a"
    ]
    assert fake_harbor.tags_of(repo, digest) == ["v1"]


def test_harbor_immutable_tag_is_kept(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["v1", "deployed_a"])
    fake_harbor.mark_immutable(repo, "deployed_a")
    with client_for(fake_harbor) as client:
        assert client.delete_tag(repo, "deployed_a", digest) == "immutable"
    assert fake_harbor.tags_of(repo, digest) == ["deployed_a", "v1"]


def test_harbor_project_immutability_rule_keeps_the_tag(fake_harbor: FakeHarbor) -> None:
    fake_harbor.add_project("locked", immutable_patterns=["deployed_*"])
    digest = fake_harbor.add_artifact("locked/app", ["1", "deployed_a"])
    with client_for(fake_harbor) as client:
        assert client.delete_tag("locked/app", "deployed_a", digest) == "immutable"
    assert fake_harbor.tags_of("locked/app", digest) == ["1", "deployed_a"]


def test_harbor_account_without_delete_permission(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["deployed_a"])
    with client_for(fake_harbor, "robot$readonly") as client, pytest.raises(PermissionDenied) as caught:
        client.delete_tag(repo, "deployed_a", digest)
    assert fake_harbor.host in str(caught.value) and repo in str(caught.value)
    assert fake_harbor.tags_of(repo, digest) == ["deployed_a"]


def test_harbor_anonymous_deletion_is_refused(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["deployed_a"])
    with client_for(fake_harbor, None) as client, pytest.raises(AuthenticationFailed):
        client.delete_tag(repo, "deployed_a", digest)
    assert fake_harbor.tags_of(repo, digest) == ["deployed_a"]


def test_harbor_server_error_is_retried_then_transient(fake_harbor: FakeHarbor) -> None:
    repo = fake_harbor.new_repository()
    digest = fake_harbor.add_artifact(repo, ["deployed_a", "deployed_b"])
    with client_for(fake_harbor) as client:
        fake_harbor.fail_next(500, 1, method="DELETE")
        assert client.delete_tag(repo, "deployed_a", digest) == "released"
        fake_harbor.fail_next(500, 2, method="DELETE")
        with pytest.raises(TransientError):
            client.delete_tag(repo, "deployed_b", digest)
    assert fake_harbor.tags_of(repo, digest) == ["deployed_b"]


# ---------------------------------------------------------------------------------------------------
# A registry that deletes tags by name (OCI Distribution 1.1: distribution 3, zot), as a small local server


class TagDeletingServer:
    """One repository `app` in memory: manifests by digest, tags -> digest. `DELETE manifests/<tag>`
    removes the tag (202) or answers `refusal` (status, code); `DELETE manifests/<digest>` would remove the
    manifest and every tag on it, as real registries do."""

    def __init__(self, refusal: tuple[int, str] | None = None) -> None:
        self.refusal = refusal
        self.manifests = {D1: b"{}", D2: b"{ }"}
        self.tags = {"v1": D1, "deployed_a": D1, "deployed_b": D1, "v2": D2}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _reference(self) -> str:
                return self.path.removeprefix("/v2/app/manifests/")

            def do_HEAD(self) -> None:
                with server.lock:
                    reference = self._reference()
                    digest = reference if reference in server.manifests else server.tags.get(reference)
                if digest is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_DELETE(self) -> None:
                with server.lock:
                    reference = self._reference()
                    if reference in server.manifests:  # by digest: the image and every tag on it
                        del server.manifests[reference]
                        server.tags = {t: d for t, d in server.tags.items() if d != reference}
                        self._reply(202)
                        return
                    if server.refusal is not None:
                        status, code = server.refusal
                        body = json.dumps({"errors": [{"code": code, "message": "no"}]}).encode()
                        self._reply(status, body, {"Content-Type": "application/json"})
                        return
                    if server.tags.pop(reference, None) is None:
                        self._reply(404)
                        return
                    self._reply(202)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def settings(self) -> RegistrySettings:
        return RegistrySettings(host=f"127.0.0.1:{self.server.server_address[1]}", insecure=True)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.fixture
def tag_deleting() -> Iterator[TagDeletingServer]:
    server = TagDeletingServer()
    yield server
    server.stop()


def test_an_oci_registry_that_deletes_tags_releases_only_the_tag(tag_deleting: TagDeletingServer) -> None:
    with registry_client(tag_deleting.settings(), retry=FAST) as client:
        assert client.delete_tag("app", "deployed_a", D1) == "released"
        assert client.delete_tag("app", "deployed_a", D1) == "absent"
        assert client.delete_tag("app", "v2", D1) == "moved"
    assert tag_deleting.tags == {"v1": D1, "deployed_b": D1, "v2": D2}
    assert set(tag_deleting.manifests) == {D1, D2}


@pytest.mark.parametrize("refusal", [(405, "UNSUPPORTED"), (400, "DIGEST_INVALID")])
def test_a_refusal_never_falls_back_to_deleting_by_digest(refusal: tuple[int, str]) -> None:
    server = TagDeletingServer(refusal)
    try:
        with registry_client(server.settings(), retry=FAST) as client:
            assert client.delete_tag("app", "deployed_a", D1) == "unsupported"
        assert set(server.manifests) == {D1, D2}
        assert server.tags == {"v1": D1, "deployed_a": D1, "deployed_b": D1, "v2": D2}
    finally:
        server.stop()


def test_any_other_refusal_is_a_typed_error_and_deletes_nothing() -> None:
    server = TagDeletingServer((403, "DENIED"))
    try:
        with registry_client(server.settings(), retry=FAST) as client, pytest.raises(PermissionDenied):
            client.delete_tag("app", "deployed_a", D1)
        assert set(server.manifests) == {D1, D2} and server.tags["deployed_a"] == D1
    finally:
        server.stop()
