"""The fake Harbor is only worth trusting if it stays inside Harbor's published API definition: every
request pulltag's Harbor client makes, and every answer the fake gives, must be a path, method, status
code and error shape that `harbor-api-v2.0-swagger.yaml` defines.

The definition is vendored in tests/harness/specs (a clone must test alone, wherever it is checked out)
and its sha256 recorded here, checked in every run; where the planning folder ../shared/specs sits beside
the clone, the copy must also be identical to it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from listener.registry import PermanentError, RetryPolicy, registry_client
from tests.harness.harbor import FakeHarbor

SPEC_NAME = "harbor-api-v2.0-swagger.yaml"
SPEC = Path(__file__).resolve().parents[2] / "harness" / "specs" / SPEC_NAME
# sha256 of the vendored harbor-api-v2.0-swagger.yaml (Harbor's api/v2.0/swagger.yaml, `info.version` 2.0).
SPEC_SHA256 = "dea3b3f6cfc225acb569019904218f30032a6fdf4331c86e372bc53198fab840"
SHARED_SPEC = Path(__file__).resolve().parents[3].parent / "shared" / "specs" / SPEC_NAME
# Harbor's immutable-tag middleware answers 412 (StatusPreconditionFailed, goharbor/harbor#9427) on
# routes whose swagger entry does not list it; pulltag handles it, so the fake may give it there.
TAGS = "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags"
OUTSIDE_SWAGGER = {("post", TAGS): {"412"}, ("delete", TAGS + "/{tag_name}"): {"412"}}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.is_file():
        pytest.fail(f"Harbor's API definition is missing: {SPEC}", pytrace=False)
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return loaded


def test_the_vendored_definition_is_the_published_one() -> None:
    """The copy is byte for byte the one vendored (a fake that drifts must not be "fixed" by editing the
    definition); where the planning folder sits beside the clone, it is also identical to that copy."""
    digest = hashlib.sha256(SPEC.read_bytes()).hexdigest()
    assert digest == SPEC_SHA256, f"{SPEC} changed (sha256 {digest}); re-vendor it and record the new sum"
    if SHARED_SPEC.is_file():
        assert SPEC.read_bytes() == SHARED_SPEC.read_bytes(), f"{SPEC} differs from {SHARED_SPEC}"


def route_of(spec: dict[str, Any], method: str, raw_path: str) -> tuple[str, dict[str, Any]] | None:
    """The swagger path template a raw request path matches (each {param} one segment, as Harbor routes)."""
    base = spec.get("basePath", "")
    path = urlsplit(raw_path).path
    if not path.startswith(base):
        return None
    path = path[len(base) :]
    for template, operations in spec["paths"].items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return template, operations[method.lower()]
    return None


def exercise(harbor: FakeHarbor) -> None:
    """Every operation pulltag's Harbor client has, in success and in each refusal the fake models."""
    fast = RetryPolicy(attempts=1, base_delay=0.01, max_delay=0.01)
    repo = harbor.new_repository()
    digest = harbor.add_artifact(repo, ["v1"])
    other = harbor.add_artifact(repo, ["v2"])
    harbor.add_project("proxy", proxy_cache=True)
    proxied = harbor.add_artifact("proxy/library/nginx", ["1"])
    harbor.add_project("locked", immutable_patterns=["deployed_*"])
    locked = harbor.add_artifact("locked/app", ["1"])
    with registry_client(harbor.settings("robot$pulltag"), retry=fast) as client:
        client.check(repo)
        client.digest_of(repo, "v1")
        client.tags_on(repo, digest, "deployed_")
        client.create_tag(repo, digest, "deployed_a")
        client.create_tag(repo, digest, "deployed_a")  # 409, then found on the same artifact
        for repository, target, tag in (
            (repo, other, "deployed_a"),  # exists on another artifact: conflict
            ("proxy/library/nginx", proxied, "deployed_b"),  # 405
            ("locked/app", locked, "deployed_c"),  # 412
            (repo + "-missing", digest, "deployed_d"),  # 404
        ):
            with pytest.raises(PermanentError):
                client.create_tag(repository, target, tag)
        client.delete_tag(repo, "deployed_a", digest)  # 200
        client.delete_tag(repo, "v2", digest)  # moved: looked up, nothing deleted
        harbor.add_artifact("locked/app", ["deployed_z"], digest=locked)
        client.delete_tag("locked/app", "deployed_z", locked)  # 412
    with (
        registry_client(harbor.settings("robot$readonly"), retry=fast) as client,
        pytest.raises(PermanentError),
    ):
        client.create_tag(repo, digest, "deployed_e")  # 403
    with (
        registry_client(harbor.settings("robot$readonly"), retry=fast) as client,
        pytest.raises(PermanentError),
    ):
        client.delete_tag(repo, "v1", digest)  # 403
    wrong = harbor.settings(
        "robot$pulltag", credentials=str(harbor.credentials_file("robot$pulltag", password="x"))
    )
    with registry_client(wrong, retry=fast) as client, pytest.raises(PermanentError):
        client.create_tag(repo, digest, "deployed_f")  # 401


def test_every_request_and_answer_is_in_the_api_definition(
    spec: dict[str, Any], fake_harbor: FakeHarbor
) -> None:
    exercise(fake_harbor)
    recorded = fake_harbor.recorded()
    assert len(recorded) >= 10
    seen_statuses: set[int] = set()
    for request in recorded:
        found = route_of(spec, request.method, request.raw_path)
        assert found is not None, f"{request.method} {request.raw_path} is not in Harbor's API definition"
        template, operation = found
        allowed = set(operation["responses"]) | OUTSIDE_SWAGGER.get((request.method.lower(), template), set())
        assert str(request.status) in allowed, f"{request.method} {template} answered {request.status}"
        seen_statuses.add(request.status)
    # the refusals the client must tell apart were all exercised
    assert {200, 201, 401, 403, 404, 405, 409, 412} <= seen_statuses


def test_error_bodies_have_harbors_error_shape(spec: dict[str, Any], fake_harbor: FakeHarbor) -> None:
    errors_schema = spec["definitions"]["Errors"]
    assert errors_schema["properties"]["errors"]["items"]["$ref"] == "#/definitions/Error"
    fields = set(spec["definitions"]["Error"]["properties"])
    assert fields == {"code", "message"}
    base = (
        f"{fake_harbor.scheme}://{fake_harbor.host}"
        if hasattr(fake_harbor, "scheme")
        else f"http://{fake_harbor.host}"
    )
    response = requests.get(base + "/api/v2.0/projects/nope/repositories/x/artifacts/latest", timeout=5)
    assert response.status_code in (401, 403, 404)
    body = response.json()
    assert set(body) == {"errors"} and body["errors"]
    assert all(set(e) == fields and isinstance(e["code"], str) for e in body["errors"])


def test_the_double_encoding_rule_is_harbors(spec: dict[str, Any]) -> None:
    """The swagger itself says the repository name must be URL-encoded twice when it holds a slash."""
    parameter = spec["parameters"]["repositoryName"]
    assert "encode" in parameter["description"].lower()
