"""canonical_host and canonical_image_name: the one name of a registry host, as a table and as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulltag.images import DOCKER_HUB, canonical_host, canonical_image_name, parse_reference


@pytest.mark.parametrize(
    ("host", "plain_http", "canonical"),
    [
        ("docker.io", False, DOCKER_HUB),
        ("index.docker.io", False, DOCKER_HUB),
        ("registry-1.docker.io", False, DOCKER_HUB),
        ("registry.hub.docker.com", False, DOCKER_HUB),
        ("DOCKER.IO", False, DOCKER_HUB),
        (" Index.Docker.IO ", False, DOCKER_HUB),
        ("docker.io:443", False, DOCKER_HUB),
        ("registry-1.docker.io:443", False, DOCKER_HUB),
        ("docker.io:5000", False, "docker.io:5000"),
        ("Harbor.Example.com", False, "harbor.example.com"),
        ("harbor.example.com:443", False, "harbor.example.com"),
        ("harbor.example.com:4430", False, "harbor.example.com:4430"),
        ("harbor.example.com:80", False, "harbor.example.com:80"),
        ("harbor.example.com:80", True, "harbor.example.com"),
        ("harbor.example.com:443", True, "harbor.example.com:443"),
        ("localhost:5000", False, "localhost:5000"),
        ("[::1]:443", False, "[::1]"),
        ("[::1]:5000", False, "[::1]:5000"),
    ],
)
def test_canonical_host(host: str, plain_http: bool, canonical: str) -> None:
    assert canonical_host(host, plain_http=plain_http) == canonical


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("docker.io/library/nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("registry-1.docker.io/nginx", "docker.io/library/nginx"),
        ("DOCKER.IO/user/app", "docker.io/user/app"),
        ("Harbor.Example.com:443/team/app", "harbor.example.com/team/app"),
        ("registry.local:5000/app", "registry.local:5000/app"),
    ],
)
def test_canonical_image_name(name: str, canonical: str) -> None:
    assert canonical_image_name(name) == canonical


_HOSTS = st.from_regex(r"[A-Za-z0-9]{1,8}(\.[A-Za-z0-9]{1,8}){0,3}(:[0-9]{1,5})?", fullmatch=True)


@given(_HOSTS, st.booleans())
def test_canonical_host_is_idempotent_and_ignores_case(host: str, plain_http: bool) -> None:
    once = canonical_host(host, plain_http=plain_http)
    assert canonical_host(once, plain_http=plain_http) == once
    assert canonical_host(host.upper(), plain_http=plain_http) == once
    assert once == once.lower()


@given(_HOSTS, st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True))
def test_parsed_references_agree_with_their_canonical_name(host: str, repository: str) -> None:
    # What history --image parses and what the tagger writes name one ledger key.
    ref = parse_reference(f"{host.partition(':')[0]}.example/{repository}")
    name = canonical_image_name(ref.name)
    assert name == canonical_image_name(name)
    assert name.split("/", 1)[1] == ref.repository
