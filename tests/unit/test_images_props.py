"""Property tests for pulltag.images: round trips, idempotence, and no stray exceptions."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulltag.images import (
    ImageReference,
    InvalidReference,
    is_valid_digest,
    is_valid_repository,
    is_valid_tag,
    parse_image_id,
    parse_reference,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Path components as distribution defines them, kept short so names stay under 255 characters.
path_components = st.from_regex(r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
# Docker Hub namespaces without "." so that the first component is never read as a registry.
hub_components = st.from_regex(r"[a-z0-9]{1,8}(?:(?:_|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
paths = st.lists(path_components, min_size=1, max_size=4).map("/".join)
domain_components = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
ports = st.integers(min_value=0, max_value=65535).map(lambda p: f":{p}")
dns_registries = st.builds(
    lambda parts, port: ".".join(parts) + port,
    st.lists(domain_components, min_size=2, max_size=4),
    st.one_of(st.just(""), ports),
)
registries = st.one_of(
    dns_registries,
    st.builds(lambda c, p: c + p, domain_components, ports),
    st.just("localhost"),
    st.builds(lambda p: "localhost" + p, ports),
    st.sampled_from(["[::1]", "[::1]:5000", "[fc00::1]:443", "[2001:db8:1:2:3:4:5:6]"]),
    st.sampled_from(["quay.io", "ghcr.io", "registry.k8s.io", "127.0.0.1:5000"]),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.one_of(
    st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True),
    st.from_regex(r"sha512:[a-f0-9]{128}", fullmatch=True),
)


def _suffix(tag: str | None, digest: str | None) -> str:
    return (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")


@st.composite
def registry_references(draw: st.DrawFn) -> tuple[str, str, str, str | None, str | None]:
    """A valid reference with an explicit (non-Docker-Hub) registry, and its expected fields."""
    registry = draw(registries)
    path = draw(paths)
    tag = draw(st.one_of(st.none(), tags))
    digest = draw(st.one_of(st.none(), digests))
    return f"{registry}/{path}{_suffix(tag, digest)}", registry, path, tag, digest


@st.composite
def hub_references(draw: st.DrawFn) -> tuple[str, str, str | None, str | None]:
    """A valid familiar Docker Hub reference (maybe prefixed), and its expected repository."""
    parts = draw(st.lists(hub_components, min_size=1, max_size=3))
    prefix = draw(st.sampled_from(["", "docker.io/", "index.docker.io/"]))
    tag = draw(st.one_of(st.none(), tags))
    digest = draw(st.one_of(st.none(), digests))
    repository = "/".join(parts) if len(parts) > 1 else "library/" + parts[0]
    return f"{prefix}{'/'.join(parts)}{_suffix(tag, digest)}", repository, tag, digest


def _assert_round_trips(ref: ImageReference) -> None:
    again = parse_reference(ref.canonical)
    assert again == ref
    assert (again.registry, again.repository, again.digest) == (ref.registry, ref.repository, ref.digest)
    assert again.canonical == ref.canonical  # idempotent
    assert parse_reference(ref.familiar).canonical == ref.canonical
    assert hash(again) == hash(ref)


@FAST
@given(registry_references())
def test_registry_references_parse_exactly(case: tuple[str, str, str, str | None, str | None]) -> None:
    text, registry, path, tag, digest = case
    ref = parse_reference(text)
    expected_tag = "latest" if tag is None and digest is None else tag
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, path, expected_tag, digest)
    _assert_round_trips(ref)


@FAST
@given(hub_references())
def test_docker_hub_references_normalise(case: tuple[str, str, str | None, str | None]) -> None:
    text, repository, tag, digest = case
    ref = parse_reference(text)
    assert ref.registry == "docker.io"
    assert ref.repository == repository
    assert ref.digest == digest
    assert ref.tag == ("latest" if tag is None and digest is None else tag)
    assert not ref.familiar.startswith(("docker.io/", "library/")) or repository.count("/") > 1
    _assert_round_trips(ref)


def _parse_or_invalid(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as err:
        assert err.text == text
        return
    # Whatever parses must be well formed and round-trip.
    assert is_valid_repository(ref.repository)
    assert ref.tag is None or is_valid_tag(ref.tag)
    assert ref.digest is None or is_valid_digest(ref.digest)
    _assert_round_trips(ref)


def _image_id_or_invalid(text: str) -> None:
    try:
        image_id = parse_image_id(text)
    except InvalidReference as err:
        assert err.text == text
        return
    assert is_valid_digest(image_id.digest)
    assert image_id.has_repository is (image_id.name is not None)


@FAST
@given(st.text(max_size=80))
def test_arbitrary_text_only_raises_invalid_reference(text: str) -> None:
    _parse_or_invalid(text)
    _image_id_or_invalid(text)


# Text over the alphabet that matters, so that the parser gets deep into the grammar.
grammar_text = st.text(alphabet="aA0f.:_-/@[]sha256 \n", max_size=60)


@FAST
@given(grammar_text)
def test_grammar_like_text_only_raises_invalid_reference(text: str) -> None:
    _parse_or_invalid(text)
    _image_id_or_invalid(text)


@FAST
@given(registry_references(), st.integers(min_value=0, max_value=400), st.characters())
def test_mutated_references_only_raise_invalid_reference(
    case: tuple[str, str, str, str | None, str | None], position: int, char: str
) -> None:
    text = case[0]
    position %= len(text) + 1
    _parse_or_invalid(text[:position] + char + text[position:])
    _parse_or_invalid(text[:position] + text[position + 1 :])


@FAST
@given(registry_references())
def test_trailing_newline_never_parses(case: tuple[str, str, str, str | None, str | None]) -> None:
    text = case[0]
    for bad in (text + "\n", "\n" + text, text + " "):
        _parse_or_invalid(bad)
        try:
            parse_reference(bad)
        except InvalidReference:
            pass
        else:
            raise AssertionError(f"{bad!r} parsed")


@FAST
@given(st.one_of(registries.map(lambda r: r + "/x"), st.just("x")), digests)
def test_image_ids_round_trip(name: str, digest: str) -> None:
    image_id = parse_image_id(f"{name}@{digest}")
    assert image_id.has_repository
    assert parse_image_id(image_id.canonical) == image_id
    local = parse_image_id(digest)
    assert not local.has_repository
    assert parse_image_id("docker://" + digest) == local
