"""dockerconfigjson parsing and kubelet-style host matching."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.registry.credentials import (
    Credentials,
    CredentialsError,
    DockerConfigKeyring,
    key_matches,
    normalize_key,
)


def write(path: Path, auths: dict[str, dict[str, str]]) -> Path:
    path.write_text(json.dumps({"auths": auths}))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auth_field_username_password_and_identity_token(tmp_path: Path) -> None:
    keyring = DockerConfigKeyring(
        write(
            tmp_path / "c.json",
            {
                "a.example.com": {"auth": b64("robot$ci:pa:ss")},
                "b.example.com": {"username": "u", "password": "p"},
                "c.example.com": {"identitytoken": "refresh-me"},
            },
        )
    )
    assert keyring.lookup("a.example.com") == Credentials("robot$ci", "pa:ss")
    assert keyring.lookup("b.example.com") == Credentials("u", "p")
    assert keyring.lookup("c.example.com") == Credentials(identity_token="refresh-me")
    assert keyring.lookup("d.example.com") is None


def test_legacy_dockercfg_without_auths(tmp_path: Path) -> None:
    path = tmp_path / "cfg"
    path.write_text(json.dumps({"https://reg.example.com": {"auth": b64("u:p")}}))
    assert DockerConfigKeyring(path).lookup("reg.example.com") == Credentials("u", "p")


def test_repr_and_str_hide_secrets() -> None:
    creds = Credentials("alice", "s3cr3t-pw", "tok-123")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "s3cr3t-pw" not in text and "tok-123" not in text
        assert "alice" in text


@pytest.mark.parametrize(
    ("key", "normal"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://Reg.Example.com:443/v2/", "reg.example.com"),
        ("http://Reg.Example.com:5000/v2/", "reg.example.com:5000"),
        ("reg.example.com/team", "reg.example.com/team"),
        ("https://reg.example.com/v2/team/app", "reg.example.com/team/app"),
    ],
)
def test_keys_are_normalised_like_the_kubelet(key: str, normal: str) -> None:
    assert normalize_key(key) == normal


@pytest.mark.parametrize(
    ("key", "image", "matches"),
    [
        ("reg.example.com", "reg.example.com/team/app", True),
        ("reg.example.com:5000", "reg.example.com/team/app", False),
        ("reg.example.com", "reg.example.com:5000/team/app", False),
        ("reg.example.com:5000", "reg.example.com:5000/app", True),
        ("*.example.com", "reg.example.com/app", True),
        ("*.example.com", "a.reg.example.com/app", False),
        ("*.*.com", "reg.example.com/app", True),
        ("reg.example.com/team", "reg.example.com/team/app", True),
        ("reg.example.com/team", "reg.example.com/other/app", False),
        ("reg.example.com", "example.com/app", False),
    ],
)
def test_matching(key: str, image: str, matches: bool) -> None:
    assert key_matches(key, image) is matches


def test_most_specific_key_first(tmp_path: Path) -> None:
    keyring = DockerConfigKeyring(
        write(
            tmp_path / "c.json",
            {
                "reg.example.com": {"auth": b64("host:h")},
                "https://reg.example.com/v2/team": {"auth": b64("team:t")},
                "reg.example.com/team/special": {"auth": b64("special:s")},
            },
        )
    )
    assert keyring.lookup("reg.example.com", "team/special/app") == Credentials("special", "s")
    assert keyring.lookup("reg.example.com", "team/app") == Credentials("team", "t")
    assert keyring.lookup("reg.example.com", "other/app") == Credentials("host", "h")
    assert [c.username for c in keyring.lookup_all("reg.example.com", "team/special/x")] == [
        "special",
        "team",
        "host",
    ]


@pytest.mark.parametrize("key", ["docker.io", "index.docker.io", "https://index.docker.io/v1/"])
@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_aliases_are_one(tmp_path: Path, key: str, host: str) -> None:
    keyring = DockerConfigKeyring(write(tmp_path / "c.json", {key: {"auth": b64("hub:pw")}}))
    assert keyring.lookup(host, "library/nginx") == Credentials("hub", "pw")


def test_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", {"reg.example.com": {"auth": b64("old:1")}})
    keyring = DockerConfigKeyring(path)
    assert keyring.lookup("reg.example.com") == Credentials("old", "1")
    write(path, {"reg.example.com": {"auth": b64("new:2")}})  # same size: mtime must differ
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert keyring.lookup("reg.example.com") == Credentials("new", "2")


def test_secret_volume_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes updates a mounted Secret by pointing `..data` at a new directory."""
    mount = tmp_path / "mount"
    mount.mkdir()
    first = mount / "..2026_01_01"
    first.mkdir()
    write(first / ".dockerconfigjson", {"reg.example.com": {"auth": b64("v1:a")}})
    (mount / "..data").symlink_to(first.name)
    (mount / ".dockerconfigjson").symlink_to("..data/.dockerconfigjson")
    keyring = DockerConfigKeyring(mount / ".dockerconfigjson")
    assert keyring.lookup("reg.example.com") == Credentials("v1", "a")
    second = mount / "..2026_01_02"
    second.mkdir()
    write(second / ".dockerconfigjson", {"reg.example.com": {"auth": b64("v2:b")}})
    (mount / "..data_tmp").symlink_to(second.name)
    (mount / "..data_tmp").replace(mount / "..data")
    assert keyring.lookup("reg.example.com") == Credentials("v2", "b")


def test_broken_update_keeps_the_last_good_copy(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", {"reg.example.com": {"auth": b64("u:p")}})
    keyring = DockerConfigKeyring(path)
    assert keyring.lookup("reg.example.com") == Credentials("u", "p")
    path.write_text('{"auths": ')
    assert keyring.lookup("reg.example.com") == Credentials("u", "p")


def test_unreadable_file_error_does_not_quote_content(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"auths": {"x": {"password": "topsecret"')
    with pytest.raises(CredentialsError) as caught:
        DockerConfigKeyring(path).lookup("x")
    assert "topsecret" not in str(caught.value) and str(path) in str(caught.value)
    with pytest.raises(CredentialsError):
        DockerConfigKeyring(tmp_path / "missing.json").lookup("x")


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_host = st.lists(_label, min_size=1, max_size=4).map(".".join)
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_path = st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=3).map("/".join)


@given(_host, _port, _path, st.integers(1, 65535))
def test_a_host_key_matches_its_images_and_no_other_port(host: str, port: str, path: str, other: int) -> None:
    key = normalize_key(f"https://{host}{port}/v2/")
    assert key is not None
    location = normalize_key(f"{host}{port}")
    assert key_matches(key, f"{location}/{path}")
    if port != f":{other}":
        assert not key_matches(key, f"{normalize_key(host)}:{other}/{path}")


@given(_host, _path)
def test_a_glob_per_label_matches_same_label_count_only(host: str, path: str) -> None:
    labels = host.split(".")
    glob = ".".join(["*"] * len(labels))
    assert key_matches(glob, f"{host}/{path}")
    assert not key_matches(glob, f"x.{host}/{path}")
