"""Table tests for pulltag.images: image references as container runtimes read them.

Many cases come from github.com/distribution/reference (normalize_test.go, reference_test.go),
the library containerd, CRI-O and Docker use.
"""

from __future__ import annotations

import pickle

import pytest

from pulltag.images import (
    DEFAULT_TAG,
    DOCKER_HUB,
    ImageId,
    ImageReference,
    InvalidReference,
    is_valid_digest,
    is_valid_repository,
    is_valid_tag,
    parse_image_id,
    parse_reference,
)

SHA = "sha256:" + "f" * 64
SHA2 = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
SHA384 = "sha384:" + "a" * 96
SHA512 = "sha512:" + "f" * 128
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"


# --- parse_reference: fields ------------------------------------------------------------------

# input, registry, repository, tag, digest
FIELD_CASES = [
    # no "/" → docker.io/library/NAME, default tag
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("nginx:latest", "docker.io", "library/nginx", "latest", None),
    # first component without "." / ":" / "localhost" is a Docker Hub namespace
    ("user/app", "docker.io", "user/app", "latest", None),
    ("user/app:1", "docker.io", "user/app", "1", None),
    ("library/ubuntu", "docker.io", "library/ubuntu", "latest", None),
    ("store/foo/bar", "docker.io", "store/foo/bar", "latest", None),
    ("test_com/foo", "docker.io", "test_com/foo", "latest", None),
    ("docker/migrator", "docker.io", "docker/migrator", "latest", None),
    # explicit docker.io / legacy index.docker.io
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", "latest", None),
    ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("index.docker.io/library/nginx", "docker.io", "library/nginx", "latest", None),
    ("index.docker.io/fooo/bar", "docker.io", "fooo/bar", "latest", None),
    # a 64-hex path component is fine when it is not the whole text
    ("docker.io/" + HEX64, "docker.io", "library/" + HEX64, "latest", None),
    (HEX64 + ":tag", "docker.io", "library/" + HEX64, "tag", None),
    (HEX64[:63], "docker.io", "library/" + HEX64[:63], "latest", None),
    # registries: ".", ":" or localhost
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
    ("quay.io/x/y:1", "quay.io", "x/y", "1", None),
    ("test.com/foo", "test.com", "foo", "latest", None),
    ("test.com:8080/foo", "test.com:8080", "foo", "latest", None),
    ("test-com:8080/foo", "test-com:8080", "foo", "latest", None),
    ("test:5000/repo", "test:5000", "repo", "latest", None),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo", "latest", None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", None),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
    ),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", "latest", None),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", "latest", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", "latest", None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000", "private/moonbase", "latest", None),
    ("example.com:8000/privatebasee", "example.com:8000", "privatebasee", "latest", None),
    # IPv6 in brackets, with or without port
    ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", "latest", None),
    (
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        "[fc00:1:2:3:4:5:6:7]:5000",
        "library/debian",
        "latest",
        None,
    ),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", "latest", None),
    ("[2001:db8::1]:5000/repo:tag@" + SHA, "[2001:db8::1]:5000", "repo", "tag", SHA),
    # a one-part name is always Docker Hub, even when it looks like a host: the ":..." is a tag
    ("localhost", "docker.io", "library/localhost", "latest", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None),
    ("192.168.0.1", "docker.io", "library/192.168.0.1", "latest", None),
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None),
    # upper-case first component is a registry (distribution: paths cannot be upper case)
    ("Docker/docker", "Docker", "docker", "latest", None),
    ("DOCKER/docker", "DOCKER", "docker", "latest", None),
    ("Foo/bar", "Foo", "bar", "latest", None),
    ("Registry.Example.COM/a/b", "Registry.Example.COM", "a/b", "latest", None),
    # separators
    ("docker-rules/docker", "docker.io", "docker-rules/docker", "latest", None),
    ("docker---rules/docker", "docker.io", "docker---rules/docker", "latest", None),
    ("dock__er/docker", "docker.io", "dock__er/docker", "latest", None),
    ("d/docker", "docker.io", "d/docker", "latest", None),
    ("jess/t", "docker.io", "jess/t", "latest", None),
    ("a.b-c--d/e_f.g", "a.b-c--d", "e_f.g", "latest", None),
    (
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "docker.io",
        "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "latest",
        None,
    ),
    # tags: case-sensitive, up to 128 characters, "_" first allowed
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    ("nginx:_x", "docker.io", "library/nginx", "_x", None),
    ("nginx:" + "a" * 128, "docker.io", "library/nginx", "a" * 128, None),
    ("nginx:1.2.3-alpine_x", "docker.io", "library/nginx", "1.2.3-alpine_x", None),
    # digests: no default tag when only a digest is given; tag and digest both kept
    ("nginx@" + SHA, "docker.io", "library/nginx", None, SHA),
    ("nginx:1.25@" + SHA, "docker.io", "library/nginx", "1.25", SHA),
    ("busybox:latest@" + SHA2, "docker.io", "library/busybox", "latest", SHA2),
    ("test:5000/repo@" + SHA, "test:5000", "repo", None, SHA),
    ("test:5000/repo:tag@" + SHA, "test:5000", "repo", "tag", SHA),
    ("dmcgowan/myapp@" + SHA2, "docker.io", "dmcgowan/myapp", None, SHA2),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + SHA512, "xn--7o8h.com", "myimage", "xn--7o8h.com", SHA512),
    ("repo@" + SHA384, "docker.io", "library/repo", None, SHA384),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), FIELD_CASES)
def test_parse_reference_fields(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.name == f"{registry}/{repository}"


# --- canonical and familiar forms -------------------------------------------------------------

# input, canonical, familiar
FORM_CASES = [
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
    ("docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("user/app:1", "docker.io/user/app:1", "user/app:1"),
    ("docker.io/user/app:1", "docker.io/user/app:1", "user/app:1"),
    ("quay.io/x/y:1", "quay.io/x/y:1", "quay.io/x/y:1"),
    ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    ("other/library", "docker.io/other/library:latest", "other/library:latest"),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu:latest", "nonlibrary/ubuntu:latest"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"),
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
    ("nginx@" + SHA, "docker.io/library/nginx@" + SHA, "nginx@" + SHA),
    ("nginx:1.25@" + SHA, "docker.io/library/nginx:1.25@" + SHA, "nginx:1.25@" + SHA),
    ("busybox:latest@" + SHA2, "docker.io/library/busybox:latest@" + SHA2, "busybox:latest@" + SHA2),
    ("[::1]:5000/a/b:c", "[::1]:5000/a/b:c", "[::1]:5000/a/b:c"),
    # Docker would print "foo.bar/x" and "localhost/x", which read back as another registry:
    # the familiar form keeps docker.io/ whenever dropping it would change the meaning.
    ("docker.io/foo.bar/x", "docker.io/foo.bar/x:latest", "docker.io/foo.bar/x:latest"),
    ("docker.io/localhost/x", "docker.io/localhost/x:latest", "docker.io/localhost/x:latest"),
    ("docker.io/library/a.b", "docker.io/library/a.b:latest", "a.b:latest"),
]


@pytest.mark.parametrize(("text", "canonical", "familiar"), FORM_CASES)
def test_canonical_and_familiar(text: str, canonical: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert ref.canonical == canonical
    assert str(ref) == canonical
    assert ref.familiar == familiar
    assert parse_reference(canonical) == ref
    assert parse_reference(familiar).canonical == canonical


def test_constructed_reference_without_tag_or_digest_means_latest() -> None:
    ref = ImageReference("docker.io", "library/nginx")
    assert ref.canonical == "docker.io/library/nginx:latest"
    assert ref.familiar == "nginx:latest"
    assert ref == parse_reference("nginx")
    assert DEFAULT_TAG == "latest"
    assert DOCKER_HUB == "docker.io"


# --- equality and hashing ---------------------------------------------------------------------

SAME_IMAGE = [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx", "index.docker.io/library/nginx"),
    ("nginx", "docker.io/nginx:latest"),
    ("nginx:latest", "index.docker.io/nginx"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/app:1", "index.docker.io/user/app:1"),
    ("nginx@" + SHA, "docker.io/library/nginx@" + SHA),
    ("nginx:1@" + SHA, "index.docker.io/library/nginx:1@" + SHA),
]

DIFFERENT_IMAGES = [
    ("nginx", "nginx:1"),
    ("nginx", "nginx@" + SHA),
    ("nginx@" + SHA, "nginx:latest@" + SHA),
    ("nginx", "quay.io/library/nginx"),
    ("user/app", "library/user/app"),
    ("foo/bar", "Foo/bar"),
    ("nginx:Tag", "nginx:tag"),
]


@pytest.mark.parametrize(("a", "b"), SAME_IMAGE)
def test_same_image_compares_and_hashes_equal(a: str, b: str) -> None:
    ra, rb = parse_reference(a), parse_reference(b)
    assert ra == rb
    assert hash(ra) == hash(rb)
    assert len({ra, rb}) == 1


@pytest.mark.parametrize(("a", "b"), DIFFERENT_IMAGES)
def test_different_images_compare_unequal(a: str, b: str) -> None:
    assert parse_reference(a) != parse_reference(b)


def test_reference_is_not_equal_to_other_types() -> None:
    ref = parse_reference("nginx")
    assert ref != "docker.io/library/nginx:latest"
    assert ref != ImageId("docker.io", "library/nginx", SHA)


def test_reference_is_frozen() -> None:
    ref = parse_reference("nginx")
    with pytest.raises(AttributeError):
        ref.tag = "1"  # type: ignore[misc]


# --- parse_reference: errors ------------------------------------------------------------------

INVALID_REFERENCES = [
    # empty, whitespace, control and non-ASCII characters
    "",
    " ",
    " nginx",
    "nginx ",
    "nginx\n",
    "\nnginx",
    "ng inx",
    "nginx\t",
    "nginx\x00",
    "nginx:1\r",
    "nginx\x7f",
    "ngïnx",
    "nginx:tág",
    "nginx:１",  # full-width digit: \w / \d would accept it, Go's regexp does not
    "nginx:٣",  # Arabic-Indic digit
    "ｎginx",
    "docker.io/user/ąpp",
    # upper case in the repository path
    "Uppercase",
    "Uppercase:tag",
    "NGINX",
    "docker/Docker",
    "docker.io/docker/Docker",
    "test:5000/Uppercase/lowercase:tag",
    "localhost/App",
    # path grammar
    "https://github.com/docker/docker",
    "-docker",
    "-docker/docker",
    "docker-/docker",
    "-docker-/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker///docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "dock___er/docker",
    "docker/",
    "docker.io/",
    "/nginx",
    "nginx/",
    "aa/asdf$$^/aa",
    "a//b",
    "a/b/",
    # 64 hex characters: an image id, not a name
    HEX64,
    "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
    # registries
    "[fc00::1]",
    "[fc00::1]:5000",
    "[2001:db8::1]:tag",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[fe80::1%@invalidzone]:5000/repo",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "foo_bar.com/x",  # a registry cannot contain "_" (distribution accepts it as a registry-less name)
    "-a.com/x",
    "a-.com/x",
    "a..com/x",
    "a.com:/x",
    "a.com:port/x",
    "a.com:5000:5000/x",
    "[::1/x",
    "::1]/x",
    "Foo_Bar/x",
    # tags
    ":justtag",
    "nginx:",
    "nginx:-tag",
    "nginx:.tag",
    "nginx:" + "a" * 129,
    "nginx:a:b",
    "nginx:t@g",
    "nginx:tag:",
    "a:b:c",
    # digests
    "@" + SHA,
    "nginx@",
    "nginx@sha256",
    "nginx@sha256:",
    "nginx@sha256:abc",
    "repo@sha256:ffffffffffffffffffffffffffffffffff",
    "nginx@sha256:" + "F" * 64,
    "nginx@sha256:" + "f" * 63,
    "nginx@sha256:" + "f" * 65,
    "nginx@sha256:" + "g" * 64,
    "nginx@sha512:" + "f" * 64,
    "nginx@sha384:" + "f" * 64,
    "validname@invaliddigest:" + "f" * 64,
    "nginx@md5:" + "f" * 32,
    "nginx@SHA256:" + "f" * 64,
    "nginx@" + SHA + "@" + SHA,
    "nginx@" + SHA + ":tag",
    "nginx@" + SHA + "/x",
    "nginx@" + HEX64,
    # too long: more than 255 characters in registry/repository
    "a/" * 128 + "a:tag",
    "a/" * 127 + "a:tag-puts-this-over-max",  # 255 as given, 265 once docker.io/ is added
    "example.com/" + "a" * 244,
    "a" * 248,  # docker.io/library/ + 248 > 255
    (
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_"
        "because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_"
        "than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker"
    ),
    "a" * 5000,
]


@pytest.mark.parametrize("text", INVALID_REFERENCES)
def test_invalid_references_raise_with_text(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert info.value.text == text
    assert info.value.reason
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("invalid image reference ")


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        ("", "empty"),
        ("nginx\n", "whitespace"),
        ("NGINX", "lowercase"),
        ("docker.io/docker/Docker", "lowercase"),
        (HEX64, "image id"),
        ("a" * 248, "longer than 255"),
        ("nginx:-x", "invalid tag"),
        ("nginx@sha256:abc", "64 lowercase hex"),
        ("nginx@sha512:" + "f" * 64, "128 lowercase hex"),
        ("nginx@md5:" + "f" * 32, "unsupported digest algorithm"),
        ("nginx@nope", "<algorithm>:<hex>"),
        ("foo_bar.com/x", "invalid registry"),
        ("a//b", "invalid repository path"),
        (":tag", "missing repository name"),
    ],
)
def test_invalid_reference_reasons(text: str, reason_part: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert reason_part in info.value.reason


def test_name_of_exactly_255_characters_is_allowed() -> None:
    ref = parse_reference("example.com/" + "a" * 243)
    assert len(ref.name) == 255
    ref = parse_reference("a" * 237)
    assert len(ref.name) == 255


@pytest.mark.parametrize("value", [None, 42, 1.5, b"nginx", ["nginx"], {"image": "nginx"}, object()])
def test_non_string_input_raises_invalid_reference(value: object) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(value)  # type: ignore[arg-type]
    assert info.value.text == repr(value)
    assert "expected a string" in info.value.reason
    with pytest.raises(InvalidReference):
        parse_image_id(value)  # type: ignore[arg-type]


def test_error_message_format() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference("NGINX")
    assert str(info.value) == "invalid image reference 'NGINX': repository 'library/NGINX' must be lowercase"


def test_error_message_escapes_controls_and_truncates_but_text_is_complete() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference("a\nb")
    assert "\n" not in str(info.value)
    long_text = "a" * 5000
    with pytest.raises(InvalidReference) as info:
        parse_reference(long_text)
    assert info.value.text == long_text
    assert len(str(info.value)) < 400


def test_invalid_reference_pickles() -> None:
    err = InvalidReference("X", "because")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.text, copy.reason, str(copy)) == ("X", "because", str(err))


# --- parse_image_id ---------------------------------------------------------------------------

# imageID, registry, repository, digest
IMAGE_ID_CASES = [
    # containerd / CRI-O: the repository digest
    ("docker.io/library/nginx@" + SHA, "docker.io", "library/nginx", SHA),
    ("quay.io/x/y@" + SHA512, "quay.io", "x/y", SHA512),
    ("localhost:5000/app@" + SHA, "localhost:5000", "app", SHA),
    ("[::1]:5000/app@" + SHA, "[::1]:5000", "app", SHA),
    ("index.docker.io/nginx@" + SHA, "docker.io", "library/nginx", SHA),
    # a tag next to the digest is ignored
    ("docker.io/library/nginx:1.25@" + SHA, "docker.io", "library/nginx", SHA),
    # dockershim / cri-dockerd: familiar names behind a scheme
    ("docker-pullable://nginx@" + SHA, "docker.io", "library/nginx", SHA),
    ("docker-pullable://user/app@" + SHA, "docker.io", "user/app", SHA),
    (
        "docker-pullable://registry.example.com:5000/team/app@" + SHA,
        "registry.example.com:5000",
        "team/app",
        SHA,
    ),
    # local image ids: no repository
    ("docker://" + SHA, None, None, SHA),
    (SHA, None, None, SHA),
    (SHA512, None, None, SHA512),
    (HEX64, None, None, "sha256:" + HEX64),
    ("docker://" + HEX64, None, None, "sha256:" + HEX64),
]


@pytest.mark.parametrize(("text", "registry", "repository", "digest"), IMAGE_ID_CASES)
def test_parse_image_id(text: str, registry: str | None, repository: str | None, digest: str) -> None:
    image_id = parse_image_id(text)
    assert image_id == ImageId(registry, repository, digest)
    assert image_id.has_repository is (registry is not None)
    if registry is None:
        assert image_id.name is None
        assert image_id.canonical == digest
    else:
        assert image_id.name == f"{registry}/{repository}"
        assert image_id.canonical == f"{registry}/{repository}@{digest}"
    assert str(image_id) == image_id.canonical


INVALID_IMAGE_IDS = [
    "",
    " ",
    "docker://",
    "docker-pullable://",
    "nginx",
    "nginx:latest",
    "docker.io/library/nginx:latest",
    "docker-pullable://nginx",
    "sha256:abc",
    "sha256:" + "F" * 64,
    "sha256:" + "f" * 63,
    "sha512:" + "f" * 64,
    "md5:" + "f" * 32,
    "sha256",
    "sha256:",
    HEX64[:63],
    HEX64 + "0",
    "HEX" + HEX64[3:],
    "http://nginx@" + SHA,
    "containerd://" + SHA,
    "docker://docker://" + SHA,
    "docker.io/library/NGINX@" + SHA,
    "docker.io/library/nginx@sha256:abc",
    SHA + "\n",
    "\t" + SHA,
    "docker.io/library/nginx@" + SHA + "@" + SHA,
]


@pytest.mark.parametrize("text", INVALID_IMAGE_IDS)
def test_invalid_image_ids_raise_with_text(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_image_id(text)
    assert info.value.text == text
    assert info.value.reason


def test_image_id_error_reasons() -> None:
    with pytest.raises(InvalidReference, match="needs a digest"):
        parse_image_id("docker-pullable://nginx:1")
    with pytest.raises(InvalidReference, match="64 lowercase hex"):
        parse_image_id("sha256:abc")
    with pytest.raises(InvalidReference, match="scheme"):
        parse_image_id("http://nginx@" + SHA)
    # the reason of the inner reference error survives, with the full imageID as text
    with pytest.raises(InvalidReference, match="lowercase") as info:
        parse_image_id("docker-pullable://NGINX@" + SHA)
    assert info.value.text == "docker-pullable://NGINX@" + SHA


# --- predicates -------------------------------------------------------------------------------

VALID_TAGS = ["latest", "1", "1.25.3", "v1.0.0-rc.1", "_", "_x", "A", "Tag_With.Mixed-Case", "a" * 128, "0"]
INVALID_TAGS = [
    "",
    "-x",
    ".x",
    "a" * 129,
    "a:b",
    "a/b",
    "a@b",
    "a b",
    "latest\n",
    "\nlatest",
    "tág",
    "１",
    "٣",
    "ß",
]


@pytest.mark.parametrize("tag", VALID_TAGS)
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)


@pytest.mark.parametrize("tag", INVALID_TAGS)
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)


VALID_REPOSITORIES = [
    "nginx",
    "library/nginx",
    "a",
    "a/b/c/d",
    "a.b",
    "a_b",
    "a__b",
    "a-b",
    "a---b",
    "a.b_c__d-e/f",
    "0/9",
    HEX64,
]
INVALID_REPOSITORIES = [
    "",
    "/",
    "a/",
    "/a",
    "a//b",
    "A",
    "library/Nginx",
    "a..b",
    "a___b",
    "a._b",
    "_a",
    "a_",
    "-a",
    "a-",
    ".a",
    "a.",
    "a:b",
    "a@b",
    "a b",
    "nginx\n",
    "ngïnx",
    "ｎginx",
]


@pytest.mark.parametrize("path", VALID_REPOSITORIES)
def test_valid_repositories(path: str) -> None:
    assert is_valid_repository(path)


@pytest.mark.parametrize("path", INVALID_REPOSITORIES)
def test_invalid_repositories(path: str) -> None:
    assert not is_valid_repository(path)


VALID_DIGESTS = [SHA, SHA2, SHA384, SHA512, "sha256:" + "0123456789abcdef" * 4]
INVALID_DIGESTS = [
    "",
    "sha256",
    "sha256:",
    ":" + "f" * 64,
    "sha256:" + "f" * 63,
    "sha256:" + "f" * 65,
    "sha256:" + "F" * 64,
    "sha256:" + "f" * 63 + "g",
    "sha512:" + "f" * 127,
    "sha512:" + "f" * 64,
    "sha384:" + "f" * 64,
    "SHA256:" + "f" * 64,
    "md5:" + "f" * 32,
    "sha1:" + "f" * 40,
    "invaliddigest:" + "f" * 64,
    SHA + "\n",
    "\n" + SHA,
    SHA + " ",
    "sha256:" + "١" * 64,
    HEX64,
    "sha256:" + "f" * 64 + ":x",
]


@pytest.mark.parametrize("digest", VALID_DIGESTS)
def test_valid_digests(digest: str) -> None:
    assert is_valid_digest(digest)


@pytest.mark.parametrize("digest", INVALID_DIGESTS)
def test_invalid_digests(digest: str) -> None:
    assert not is_valid_digest(digest)


@pytest.mark.parametrize("value", [None, 1, b"latest", ["latest"]])
def test_predicates_reject_non_strings(value: object) -> None:
    assert not is_valid_tag(value)  # type: ignore[arg-type]
    assert not is_valid_repository(value)  # type: ignore[arg-type]
    assert not is_valid_digest(value)  # type: ignore[arg-type]
