"""Image names built to escape URLs (`..`, `%2F`, `?`, `#`, unicode, `@` tricks, CR/LF, very long) never
reach a request.

1. The registry clients (`registry_client(settings)`) against the real token-auth docker-registry and the
   fake Harbor: every such repository, tag, digest or prefix raises `InvalidName`, and nothing is sent —
   not by the client's own count (`requests_sent`, `on_request`), not on the wire (a recording proxy the
   client goes through), not at the servers (the token server's and the fake Harbor's records).
2. A property: whatever `parse_reference` accepts names a repository in the OCI grammar, and the requests
   the clients send for it (to the real docker-registry and the fake Harbor, seen by the recording proxy)
   stay on the configured host with no `..`, `?`, `#` or stray `%` in the path.
3. Through the chain: pods admitted with such images, and Pulled events naming them, tag nothing and make
   no registry request.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from listener.registry import InvalidName, NotFound, RegistryError, registry_client
from pulltag.config import RegistrySettings
from pulltag.images import InvalidReference, parse_image_id, parse_reference
from tests.harness.harbor import FakeHarbor
from tests.harness.kubeapi.errors import ApiError
from tests.harness.registry import RegistryServer
from tests.harness.world import Pod, World
from tests.security.conftest import (
    pulls_total,
    registry_operations,
    running_status,
    set_container_status,
    wait_idle,
)
from tests.security.wire import RecordingProxy

pytestmark = pytest.mark.timeout(120)

HEX = "a1" * 32
DIGEST = f"sha256:{HEX}"

ESCAPING_REPOSITORIES = [
    "", "..", "../etc", "team/../admin", "team/./app", "./team/app", "team//app", "/team/app", "team/app/",
    "team%2Fapp", "team/%2e%2e/app", "team/%2E%2E/admin", "team/app%00", "team/app?n=1", "team/app#frag",
    "team/app;x", "team/app x", "team\\app", "Team/App", "team/café", "team/app\u2215x", "team/\u2025/app",
    "ｔｅａｍ/app", "team/app\r\nX-Injected: 1", "team/app\n", "team/app\x00", f"team/app@{DIGEST}",
    "team/app:1", "user@evil.example.com/app", "evil.example.com@team/app", "team/" + "a" * 300, "a" * 256,
]  # fmt: skip
ESCAPING_TAGS = [
    "", "..", "../x", "x/../y", "x/y", "x%2Fy", "%2e%2e", "x?y", "x#y", "x y", "x\r\nX-Injected: 1",
    "latest\n", "é", "x\u2215y", ".x", "-x", "x@evil", "a" * 129,
]  # fmt: skip
ESCAPING_DIGESTS = [
    "", "sha256:", f"{DIGEST}/../../x", "sha256:../../x", "sha256:%2e%2e", f"../{DIGEST}",
    "sha256:" + "A1" * 32, "sha256:" + "a" * 63, "sha256:" + "g" * 64, "md5:" + "a" * 32,
    f"{DIGEST}?x=1", f"{DIGEST}#x", f"{DIGEST}\n", f"{DIGEST}\r\nX: 1", f"sha256:{'a' * 32}é{'a' * 31}",
    f"{DIGEST}@evil",
]  # fmt: skip
ESCAPING_PREFIXES = ["../", "x/y", "x?", "x#", "é", "x\n", "%2F"]


@dataclass
class Backend:
    kind: str
    settings: RegistrySettings
    repository: str  # a valid repository holding `digest`
    digest: str
    server_records: Callable[[], int]  # how many requests the server has recorded so far


@pytest.fixture(scope="module")
def proxy() -> Iterator[RecordingProxy]:
    p = RecordingProxy().start()
    yield p
    p.stop()


@pytest.fixture
def through_proxy(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> RecordingProxy:
    """The clients read proxies from the environment per request: send everything through `proxy`."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    return proxy


@pytest.fixture(params=["oci", "harbor"])
def backend(
    request: pytest.FixtureRequest, token_registry: RegistryServer, fake_harbor: FakeHarbor
) -> Backend:
    if request.param == "oci":
        repo = token_registry.new_repository("team/app")
        digest = token_registry.seed_image(repo, "1")
        token = token_registry.token_server
        assert token is not None
        return Backend("oci", token_registry.settings("admin"), repo, digest, lambda: len(token.records()))
    repo = fake_harbor.new_repository("app")
    digest = fake_harbor.seed_image(repo, "1")
    return Backend("harbor", fake_harbor.settings(), repo, digest, lambda: len(fake_harbor.recorded()))


Attempt = tuple[str, str, tuple[str, ...]]  # (shown as, method name, arguments)


def _attempts(b: Backend) -> list[Attempt]:
    repo, digest = b.repository, b.digest
    calls: list[Attempt] = []
    for r in ESCAPING_REPOSITORIES:
        calls += [
            (f"digest_of({r!r})", "digest_of", (r, "1")),
            (f"tags_on({r!r})", "tags_on", (r, digest, "deployed")),
            (f"create_tag({r!r})", "create_tag", (r, digest, "deployed_x")),
            (f"check({r!r})", "check", (r,)),
        ]
        if b.kind == "oci":
            calls.append((f"list_tags({r!r})", "list_tags", (r,)))
    for t in ESCAPING_TAGS:
        calls += [
            (f"digest_of(tag={t!r})", "digest_of", (repo, t)),
            (f"create_tag(tag={t!r})", "create_tag", (repo, digest, t)),
        ]
    for d in ESCAPING_DIGESTS:
        calls += [
            (f"digest_of(digest={d!r})", "digest_of", (repo, d)),
            (f"tags_on(digest={d!r})", "tags_on", (repo, d, "deployed")),
            (f"create_tag(digest={d!r})", "create_tag", (repo, d, "deployed_x")),
        ]
    for p in ESCAPING_PREFIXES:
        calls.append((f"tags_on(prefix={p!r})", "tags_on", (repo, digest, p)))
    return calls


def test_escaping_names_raise_and_send_nothing(backend: Backend, through_proxy: RecordingProxy) -> None:
    sent: list[tuple[str, str, int | None]] = []
    wire_before, server_before = len(through_proxy.records()), backend.server_records()
    failures: list[str] = []
    attempts = _attempts(backend)
    with registry_client(backend.settings, on_request=lambda m, u, s: sent.append((m, u, s))) as client:
        for what, method, arguments in attempts:
            try:
                getattr(client, method)(*arguments)
            except InvalidName as err:
                if "nothing was sent" not in str(err):
                    failures.append(f"{what}: InvalidName without 'nothing was sent': {err}")
            except Exception as err:  # any other outcome is a failure worth naming
                failures.append(f"{what}: {type(err).__name__}: {err}")
            else:
                failures.append(f"{what}: accepted")
        assert client.requests_sent == 0
    assert not failures, "\n".join(failures)
    assert sent == []
    assert through_proxy.records()[wire_before:] == []
    assert backend.server_records() == server_before
    assert len(attempts) > 100

    # Control: the same client setup with valid names does go over the proxy and reach the server, so
    # the silence above is the validation's, not a broken observer.
    with registry_client(backend.settings, on_request=lambda m, u, s: sent.append((m, u, s))) as client:
        assert client.digest_of(backend.repository, "1") == backend.digest
        assert client.requests_sent > 0
    assert sent and len(through_proxy.records()) > wire_before
    assert backend.server_records() > server_before


# ---------------------------------------------------------------------------------------------------
# Property: what parse_reference accepts cannot bend a URL

# The OCI distribution spec's repository name grammar, written out here independently of pulltag.images.
OCI_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
OCI_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")

_PIECES = ["..", ".", "/", "//", "%2F", "%2e", "%", "?", "#", "@", ":", "\r", "\n", " ", "é", "\u2215", "\\",
           ";", "_", "__", "-", "A", "\x00", "\t", "+"]  # fmt: skip
_component = st.text(alphabet="abz09._-", min_size=1, max_size=6)
_piece = st.one_of(_component, _component, st.sampled_from(_PIECES))
_path = st.lists(st.lists(_piece, min_size=1, max_size=4).map("".join), min_size=1, max_size=5).map("/".join)
_host = st.sampled_from(
    ["", "127.0.0.1:5000/", "harbor.example.com/", "localhost/", "a@b.example/", "[::1]:5000/",
     "evil.example.com#/", "h.example?x=/"]
)  # fmt: skip
_suffix = st.one_of(
    st.just(""),
    st.builds(lambda t: ":" + t, st.lists(_piece, max_size=4).map("".join)),
    st.just("@" + DIGEST),
    st.builds(lambda t: "@" + t, st.lists(_piece, max_size=4).map("".join)),
    st.builds(lambda t: ":1@" + DIGEST + t, st.sampled_from(["", "/..", "?x", "#x"])),
)
references = st.one_of(
    st.builds(lambda h, p, s: h + p + s, _host, _path, _suffix),
    st.text(max_size=80),
)


def _sent(proxy: RecordingProxy, since: int) -> list[tuple[str, str]]:
    """Method and absolute URL of each request the proxy forwarded after its first `since` ones."""
    return [(line.split(" ")[0], line.split(" ")[1]) for line in proxy.records()[since:]]


def _assert_clean(method: str, url: str, host: str, harbor: bool) -> None:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", host), url
    assert parts.fragment == "" and "#" not in url, url
    path = parts.path
    # A dot segment would be resolved away by a server or proxy; dots inside a segment ("v1..2") are a legal
    # tag and harmless.
    assert not {".", ".."} & set(path.split("/")) and "?" not in path, url
    if harbor:
        # Harbor wants the repository's inner slashes encoded twice ("a/b" -> "a%252Fb"); nothing else.
        assert "%" not in path.replace("%252F", ""), url
        if method == "POST":  # tag creation: POST .../artifacts/<digest>/tags with the name in the body
            assert path.endswith("/tags") and parts.query == "", url
        else:  # artifact lookups
            assert method == "GET" and parts.query in ("with_tag=true", "with_tag=false"), url
    else:
        assert "%" not in path and parts.query == "", url
    assert all(0x21 <= ord(ch) <= 0x7E for ch in url), url


def _send(
    settings_: RegistrySettings, repository: str, reference: str, tag: str | None, digest: str | None
) -> None:
    """What the listener would send for this reference: resolve it, and tag its digest."""
    with registry_client(settings_) as client:
        try:
            client.digest_of(repository, reference)
        except InvalidName:
            # Harbor needs <project>/<name>; refusing is fine, sending is what must be clean.
            assert settings_.type == "harbor" and "/" not in repository, repository
            return
        except RegistryError:
            pass  # unknown repositories end in 404: the URLs that were sent are what matter
        if digest and tag:
            with contextlib.suppress(RegistryError):
                client.create_tag(repository, digest, tag)


@pytest.mark.hypothesis  # its @given is inside: `make explore` selects it by this mark
def test_accepted_references_give_oci_names_and_clean_urls(
    oci_registry: RegistryServer, fake_harbor: FakeHarbor, through_proxy: RecordingProxy
) -> None:
    # The real anonymous docker-registry and the fake Harbor, both reached through the recording proxy:
    # the request lines it forwards are exactly what went over the wire.
    backends = ((oci_registry.settings(None), False), (fake_harbor.settings(), True))

    # The examples pin what a draw may miss: a tag plus a digest goes on to create the tag (a PUT of the
    # manifest on OCI, a POST to .../tags on Harbor); a bare digest only resolves; a two-part name is what
    # Harbor accepts; "0.." is a legal tag whose dots are not a dot segment.
    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(references)
    @example(f"0:1@{DIGEST}")
    @example(f"team/app:v1@{DIGEST}")
    @example(f"127.0.0.1:5000/a/b__c:x@{DIGEST}")
    @example(f"nginx@{DIGEST}")
    @example("0:0..")
    def check(text: str) -> None:
        try:
            ref = parse_reference(text)
        except InvalidReference:
            return
        assert OCI_NAME.fullmatch(ref.repository), ref
        assert len(ref.name) <= 255
        assert ref.tag is None or OCI_TAG.fullmatch(ref.tag), ref
        assert ref.digest is None or OCI_DIGEST.fullmatch(ref.digest), ref
        for settings_, harbor in backends:
            before = len(through_proxy.records())
            _send(settings_, ref.repository, ref.digest or ref.tag or "latest", ref.tag, ref.digest)
            for method, url in _sent(through_proxy, before):
                _assert_clean(method, url, settings_.host, harbor)

    check()


@settings(max_examples=300, deadline=None)
@given(st.builds(lambda s, r: s + r, st.sampled_from(["", "docker-pullable://", "docker://"]), references))
def test_accepted_image_ids_name_oci_repositories_and_exact_digests(text: str) -> None:
    try:
        image_id = parse_image_id(text)
    except InvalidReference:
        return
    assert OCI_DIGEST.fullmatch(image_id.digest), image_id
    if image_id.repository is not None:
        assert OCI_NAME.fullmatch(image_id.repository), image_id


def test_the_property_strategies_reach_accepted_references(
    fake_harbor: FakeHarbor, through_proxy: RecordingProxy
) -> None:
    # Not vacuous: members of the strategies' space are accepted and do produce (clean) requests.
    texts = (
        "127.0.0.1:5000/a.b/c__d:1",
        f"harbor.example.com/lib/x-y/z@{DIGEST}",
        f"localhost/p/a:1@{DIGEST}",
    )
    settings_ = fake_harbor.settings()
    for text in texts:
        ref = parse_reference(text)
        before = len(through_proxy.records())
        with registry_client(settings_) as client, pytest.raises(NotFound):
            client.digest_of(ref.repository, ref.digest or ref.tag or "latest")
        [(method, url)] = _sent(through_proxy, before)
        _assert_clean(method, url, settings_.host, harbor=True)
        assert ("%252F" in url) == ("/" in ref.repository.partition("/")[2])


# ---------------------------------------------------------------------------------------------------
# Through the chain


def _escaping_images(world: World) -> list[str]:
    host = world.registry.host
    assert world.harbor is not None
    harbor = world.harbor.host
    return [
        f"{host}/shop/../../v2/_catalog:1",
        f"{host}/shop/..%2F..%2Fv2:1",
        f"{host}/shop/app%2F..:1",
        f"{host}/shop/app?n=1000:1",
        f"{host}/shop/app:1#frag",
        f"{host}/shop/appé:1",
        f"{host}/shop/app:1/../../../v2/",
        f"{host}/shop/app@sha256:{HEX}/../../x",
        f"{host}/shop/app:1@evil.example.com/x",
        f"evil.example.com@{host}/shop/app:1",
        f"{host}@evil.example.com/shop/app:1",
        f"{host}/shop/app:1\r\nX-Injected: 1",
        f"{host}/shop/" + "a" * 300 + ":1",
        f"{host}/shop/app:" + "a" * 200,
        f"{harbor}/library/..%252F..%252Fadmin:1",
        f"{harbor}/library/../../api/v2.0/users:1",
        f"{harbor}/library/app?with_tag=true#:1",
    ]


def _create_admitted(world: World, image: str, labels: dict[str, str]) -> Pod | None:
    """Create a pod through the admission chain (in-process: the fake API server's HTTP layer cannot
    yet carry the webhook's non-Latin-1 warnings, see the report); None when the API server refuses it."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "esc-", "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }
    try:
        created = world.api.create("pods", body, "shop", admit=True)
    except ApiError:
        return None
    meta = created["metadata"]
    return Pod("shop", meta["name"], meta["uid"], {"app": image})


def test_escaping_images_through_the_chain_tag_nothing_and_send_nothing(world: World) -> None:
    assert world.harbor is not None and world.registry.token_server is not None
    repo = f"shop/escape-{uuid.uuid4().hex[:6]}"
    valid = world.push(repo, "1")
    digest = world.registry.tag_digest(repo, "1")
    images = _escaping_images(world)
    harbor_before = len(world.harbor.recorded())
    token_before = len(world.registry.token_server.records())
    operations_before = registry_operations(world)
    pulls_before = pulls_total(world)
    confirmed_before = world.metric("pulltag_pulls_total", outcome="confirmed")
    labels = {"app": "sec", "kubelet": "manual"}

    posted = 0
    admitted = 0
    admitted_uids: set[str] = set()
    for image in images:
        # A pod admitted with the image, where the API server accepts it at all; its status names a
        # real digest, so only the name stands between the event and a tag.
        pod = _create_admitted(world, image, labels)
        if pod is not None:
            admitted += 1
            admitted_uids.add(pod.uid)
            set_container_status(world, "shop", pod.name, [running_status("app", image, f"{image}@{digest}")])
            world.kubelet.post_pulled("shop", pod.name, "app", image)
            posted += 1
    # A valid, admitted, running pod, and events claiming it pulled the escaping images.
    pod = world.create_pod("shop", {"app": valid}, generate_name="esc-valid-", labels=labels)
    set_container_status(
        world, "shop", pod.name, [running_status("app", valid, f"{world.registry.host}/{repo}@{digest}")]
    )
    for image in images:
        world.kubelet.post_pulled("shop", pod.name, "app", image)
        posted += 1
    assert admitted >= len(images) // 2, "the API server refused most images: the chain part tests little"
    assert admitted_uids <= {r.uid for r in world.admissions()}, "the webhook did not record every pod"

    world.wait_for(
        lambda: pulls_total(world) >= pulls_before + posted, 30, f"the listener to decide {posted} pulls"
    )
    wait_idle(world)
    assert world.metric("pulltag_pulls_total", outcome="confirmed") == confirmed_before
    assert registry_operations(world) == operations_before
    assert world.harbor.recorded()[harbor_before:] == []
    assert world.registry.token_server.records()[token_before:] == []
    assert not [t for t in world.registry.list_tags(repo) if t.startswith("deployed_")]
    assert not [e for e in world.ledger() if repo in e["image"] or "shop/app" in e["image"]]
    # The CR/LF image names were logged, on one line each: no forged log line.
    assert world.listener is not None and world.webhook.process is not None
    for log_path in (world.listener.log_path, world.webhook.process.log_path):
        lines = log_path.read_text(errors="replace").splitlines()
        assert not [line for line in lines if line.startswith("X-Injected")], log_path
    assert "X-Injected" in world.listener.log_path.read_text(errors="replace")
