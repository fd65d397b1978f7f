"""The simulated kubelet against the fake API server and a real docker-registry.

Everything is checked on what the API serves (events and pod status as a client reads them), for each
kubelet version whose wording differs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import pytest
from kubernetes import client, config, watch

from listener.pulls import Pull, parse_pull
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.kubelet import KubeletVersion, PullError, RegistryResolver, go_duration
from tests.harness.registry import PASSWORDS, RegistryServer

from .conftest import KubeletFactory, make_pod, pod_events, status_of

Obj = dict[str, Any]

VERSIONS = ["1.18", "1.25", "1.29", "1.30", "1.35"]
FIXED_PULL = 1.234567891  # seconds reported as the pull time, for exact messages
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CONTAINER_ID = re.compile(r"containerd://[0-9a-f]{64}")


def expected_size(registry: RegistryServer, repository: str, reference: str) -> int:
    """What containerd stores for linux/amd64: (index +) manifest + config + layers."""
    found = registry.get_manifest(repository, reference)
    assert found is not None
    body, _, _ = found
    total = len(body)
    doc = json.loads(body)
    if "manifests" in doc:
        child = next(m for m in doc["manifests"] if m["platform"]["architecture"] == "amd64")
        return total + expected_size(registry, repository, child["digest"])
    return total + int(doc["config"]["size"]) + sum(int(layer["size"]) for layer in doc["layers"])


def pulled_message(version: str, image: str, size: int) -> str:
    q = f'"{image}"'
    with_size = (
        f"Successfully pulled image {q} in 1.234s (1.234s including waiting). Image size: {size} bytes."
    )
    return {
        "1.18": f"Successfully pulled image {q}",
        "1.25": f"Successfully pulled image {q} in 1.234567891s",
        "1.29": f"Successfully pulled image {q} in 1.234s (1.234s including waiting)",
        "1.30": with_size,
        "1.35": with_size,
    }[version]


def present_message(version: str, image: str) -> str:
    suffix = " and can be accessed by the pod" if version == "1.35" else ""
    return f'Container image "{image}" already present on machine{suffix}'


# ---------------------------------------------------------------------------------------------------
# Events and status, per version


@pytest.mark.parametrize("version", VERSIONS)
def test_events_and_status_look_like_the_real_kubelet(
    version: str,
    kubeapi: FakeKubeAPI,
    registry: RegistryServer,
    repo: str,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    pushed = registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    created = make_pod(kubeapi, namespace, "web", {"app": image})
    kubelet = make_kubelet(version=version, pull_duration=FIXED_PULL)
    before_ns = time.time_ns()
    kubelet.run_pod(namespace, "web")
    after_ns = time.time_ns()

    pod = kubeapi.get("pods", "web", namespace)
    node = pod["spec"]["nodeName"]
    assert node in ("node-1", "node-2")
    events = pod_events(kubeapi, namespace, "web")
    assert [(e["reason"], e["type"]) for e in events] == [
        ("Pulling", "Normal"),
        ("Pulled", "Normal"),
        ("Created", "Normal"),
        ("Started", "Normal"),
    ]
    pulling, pulled = events[0], events[1]
    assert pulling["message"] == f'Pulling image "{image}"'
    assert pulled["message"] == pulled_message(version, image, expected_size(registry, repo, "1.0"))

    # The name is fmt.Sprintf("%v.%x", ref.Name, t.UnixNano()).
    name, _, stamp = pulled["metadata"]["name"].rpartition(".")
    assert name == "web" and re.fullmatch(r"[0-9a-f]+", stamp)
    assert before_ns <= int(stamp, 16) <= after_ns
    reporting = "kubelet" if version in ("1.29", "1.30", "1.35") else ""
    for e in events:
        assert e["involvedObject"] == {
            "kind": "Pod",
            "namespace": namespace,
            "name": "web",
            "uid": created["metadata"]["uid"],
            "apiVersion": "v1",
            "resourceVersion": e["involvedObject"]["resourceVersion"],
            "fieldPath": "spec.containers{app}",
        }
        assert int(e["involvedObject"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
        assert e["source"] == {"component": "kubelet", "host": node}
        assert e["reportingComponent"] == reporting
        assert e["reportingInstance"] == (node if reporting else "")
        assert e["count"] == 1
        assert TIMESTAMP.fullmatch(e["firstTimestamp"]) and e["firstTimestamp"] == e["lastTimestamp"]
        assert e["eventTime"] is None
        assert e["metadata"]["namespace"] == namespace and e["metadata"]["uid"]

    status = status_of(pod, "app")
    assert status["image"] == image
    assert status["imageID"] == f"{registry.host}/{repo}@{pushed.digest}"
    assert CONTAINER_ID.fullmatch(status["containerID"])
    assert status["ready"] is True and status["started"] is True and status["restartCount"] == 0
    assert TIMESTAMP.fullmatch(status["state"]["running"]["startedAt"])
    assert pod["status"]["phase"] == "Running"
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert {t: c["status"] for t, c in conditions.items() if t != "PodReadyToStartContainers"} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
    }
    assert ("PodReadyToStartContainers" in conditions) == (version in ("1.29", "1.30", "1.35"))
    assert "reason" not in conditions["Ready"]
    assert pod["status"]["podIP"] and pod["status"]["hostIP"]


@pytest.mark.parametrize("version", VERSIONS)
def test_listener_recognises_the_pulled_event(
    version: str,
    kubeapi: FakeKubeAPI,
    registry: RegistryServer,
    repo: str,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    registry.push_image(repo, "2")
    image = f"{registry.host}/{repo}:2"
    make_pod(kubeapi, namespace, "p", {"app": image})
    make_kubelet(version=version).run_pod(namespace, "p")  # real durations
    pulled = next(e for e in pod_events(kubeapi, namespace, "p") if e["reason"] == "Pulled")
    pull = parse_pull(pulled)
    assert isinstance(pull, Pull), pull
    assert (pull.image, pull.container, pull.container_kind, pull.already_present) == (
        image,
        "app",
        "containers",
        False,
    )
    if version != "1.18":
        assert pull.pull_seconds is not None and 0 <= pull.pull_seconds < 30
    if version in ("1.29", "1.30", "1.35"):
        assert re.search(
            r" in (0s|\d+(\.\d{1,3})?m?s) \((0s|\d+(\.\d{1,3})?m?s) including waiting\)", pulled["message"]
        ), pulled["message"]


def test_docker_hub_names_are_normalised_like_containerd(
    kubeapi: FakeKubeAPI, namespace: str, make_kubelet: KubeletFactory
) -> None:
    digest = "sha256:" + "ab" * 32
    asked: list[str] = []

    def resolve(image: str) -> str | None:
        asked.append(image)
        return digest

    make_pod(kubeapi, namespace, "hub", {"web": "nginx", "tool": "bitnami/kubectl:1.30"})
    make_kubelet(resolve_digest=resolve, version="1.30").run_pod(namespace, "hub")
    pod = kubeapi.get("pods", "hub", namespace)
    assert asked == ["nginx", "bitnami/kubectl:1.30"]  # the image as written in the spec
    assert status_of(pod, "web")["image"] == "docker.io/library/nginx:latest"
    assert status_of(pod, "web")["imageID"] == f"docker.io/library/nginx@{digest}"
    assert status_of(pod, "tool")["image"] == "docker.io/bitnami/kubectl:1.30"
    assert status_of(pod, "tool")["imageID"] == f"docker.io/bitnami/kubectl@{digest}"
    messages = [e["message"] for e in pod_events(kubeapi, namespace, "hub") if e["reason"] == "Pulling"]
    assert messages == ['Pulling image "nginx"', 'Pulling image "bitnami/kubectl:1.30"']


# ---------------------------------------------------------------------------------------------------
# The node's image cache


@pytest.mark.parametrize("version", ["1.25", "1.30", "1.35"])
def test_second_pod_on_the_same_node_finds_the_image_present(
    version: str,
    kubeapi: FakeKubeAPI,
    registry: RegistryServer,
    repo: str,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    pushed = registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    kubelet = make_kubelet(version=version, nodes=["node-1", "node-2"], scheduling="round-robin")
    for name in ("a", "b", "c"):
        make_pod(kubeapi, namespace, name, {"app": image})
        kubelet.run_pod(namespace, name)
    nodes = {n: kubeapi.get("pods", n, namespace)["spec"]["nodeName"] for n in ("a", "b", "c")}
    assert nodes == {"a": "node-1", "b": "node-2", "c": "node-1"}

    def pulls(pod: str) -> list[tuple[str, str]]:
        return [
            (e["reason"], e["message"])
            for e in pod_events(kubeapi, namespace, pod)
            if e["reason"] in ("Pulling", "Pulled")
        ]

    assert [r for r, _ in pulls("a")] == ["Pulling", "Pulled"]
    assert [r for r, _ in pulls("b")] == ["Pulling", "Pulled"]  # another node: pulled again
    assert pulls("c") == [("Pulled", present_message(version, image))]
    for name in ("a", "b", "c"):
        pod = kubeapi.get("pods", name, namespace)
        assert status_of(pod, "app")["imageID"] == f"{registry.host}/{repo}@{pushed.digest}"
    assert kubelet.image_cache("node-1") == {image: pushed.digest}


def test_node_keeps_the_digest_it_pulled_when_the_tag_moves(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    first = registry.push_image(repo, "stable")
    image = f"{registry.host}/{repo}:stable"
    kubelet = make_kubelet(nodes=["node-1"])
    make_pod(kubeapi, namespace, "old", {"app": image})
    kubelet.run_pod(namespace, "old")
    second = registry.push_image(repo, "stable")  # the tag now names another digest
    make_pod(kubeapi, namespace, "new", {"app": image})
    kubelet.run_pod(namespace, "new")
    pod = kubeapi.get("pods", "new", namespace)
    assert status_of(pod, "app")["imageID"] == f"{registry.host}/{repo}@{first.digest}" != second.digest


def test_pull_policy_always_pulls_again(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "latest")
    image = f"{registry.host}/{repo}"  # no tag: ":latest", imagePullPolicy defaults to Always
    kubelet = make_kubelet(nodes=["node-1"])
    for name in ("one", "two"):
        make_pod(kubeapi, namespace, name, {"app": image})
        kubelet.run_pod(namespace, name)
        assert kubeapi.get("pods", name, namespace)["spec"]["containers"][0]["imagePullPolicy"] == "Always"
        reasons = [e["reason"] for e in pod_events(kubeapi, namespace, name)]
        assert reasons[:2] == ["Pulling", "Pulled"]
        assert status_of(kubeapi.get("pods", name, namespace), "app")["image"] == f"{image}:latest"


# ---------------------------------------------------------------------------------------------------
# Multi-arch images, authenticated registries, missing images


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_multi_arch_image_id_is_the_index_digest(
    kind: str,
    kubeapi: FakeKubeAPI,
    registry: RegistryServer,
    repo: str,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    index = registry.push_index(repo, "multi", kind=kind)  # type: ignore[arg-type]
    served = registry.get_manifest(repo, "multi")
    assert served is not None
    image = f"{registry.host}/{repo}:multi"
    make_pod(kubeapi, namespace, "ma", {"app": image})
    make_kubelet(version="1.30", pull_duration=FIXED_PULL).run_pod(namespace, "ma")
    status = status_of(kubeapi.get("pods", "ma", namespace), "app")
    assert status["imageID"] == f"{registry.host}/{repo}@{served[2]}"
    assert served[2] == index.digest and index.digest not in index.children
    pulled = next(e for e in pod_events(kubeapi, namespace, "ma") if e["reason"] == "Pulled")
    assert pulled["message"] == pulled_message("1.30", image, expected_size(registry, repo, "multi"))


@pytest.mark.parametrize("backend", ["htpasswd_registry", "token_registry"])
def test_resolves_digests_from_registries_with_auth(
    backend: str,
    request: pytest.FixtureRequest,
    kubeapi: FakeKubeAPI,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    server: RegistryServer = request.getfixturevalue(backend)
    repo = server.new_repository("sim/private")
    pushed = server.push_image(repo, "1")
    image = f"{server.host}/{repo}:1"
    anonymous = RegistryResolver()
    with pytest.raises(PullError, match="authorization"):
        anonymous(image)
    resolver = RegistryResolver(credentials=lambda host: ("reader", PASSWORDS["reader"]))
    make_pod(kubeapi, namespace, "auth", {"app": image})
    make_kubelet(resolve_digest=resolver).run_pod(namespace, "auth")
    assert (
        status_of(kubeapi.get("pods", "auth", namespace), "app")["imageID"]
        == f"{server.host}/{repo}@{pushed.digest}"
    )


@pytest.mark.parametrize("version", ["1.18", "1.30", "1.35"])
def test_missing_image_fails_and_backs_off_without_image_id(
    version: str,
    kubeapi: FakeKubeAPI,
    registry: RegistryServer,
    repo: str,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    registry.push_image(repo, "1.0")
    good, missing = f"{registry.host}/{repo}:1.0", f"{registry.host}/{repo}:nope"
    make_pod(kubeapi, namespace, "bad", {"ok": good, "broken": missing})
    make_kubelet(version=version).run_pod(namespace, "bad")
    pod = kubeapi.get("pods", "bad", namespace)
    broken = [
        e
        for e in pod_events(kubeapi, namespace, "bad")
        if e["involvedObject"]["fieldPath"] == "spec.containers{broken}"
    ]
    assert [(e["type"], e["reason"]) for e in broken] == [
        ("Normal", "Pulling"),
        ("Warning", "Failed"),
        ("Warning", "Failed"),
        ("Normal", "BackOff"),
        ("Warning", "Failed"),
    ]
    not_found = f'failed to resolve reference "{missing}": {missing}: not found'
    assert broken[1]["message"] == (
        f'Failed to pull image "{missing}": rpc error: code = NotFound desc = '
        f'failed to pull and unpack image "{missing}": {not_found}'
    )
    assert [e["message"] for e in broken[2:]] == [
        "Error: ErrImagePull",
        f'Back-off pulling image "{missing}"',
        "Error: ImagePullBackOff",
    ]
    status = status_of(pod, "broken")
    assert status["imageID"] == "" and "containerID" not in status
    assert status["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert status["image"] == missing and status["ready"] is False
    assert status_of(pod, "ok")["imageID"]  # the other container still runs
    assert pod["status"]["phase"] == "Pending"
    assert not any(
        e["reason"] == "Pulled" and "broken" in e["involvedObject"]["fieldPath"]
        for e in pod_events(kubeapi, namespace, "bad")
    )


# ---------------------------------------------------------------------------------------------------
# Init, ephemeral and restarted containers


def test_init_containers_first_in_order_then_ephemeral_when_added(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    for tag in ("init-a", "init-b", "main", "debug"):
        registry.push_image(repo, tag)
    img = {t: f"{registry.host}/{repo}:{t}" for t in ("init-a", "init-b", "main", "debug")}
    make_pod(
        kubeapi,
        namespace,
        "ini",
        {"main": img["main"]},
        init={"first": img["init-a"], "second": img["init-b"]},
    )
    kubelet = make_kubelet(version="1.30")
    kubelet.run_pod(namespace, "ini")
    pulled = [e for e in pod_events(kubeapi, namespace, "ini") if e["reason"] == "Pulled"]
    assert [e["involvedObject"]["fieldPath"] for e in pulled] == [
        "spec.initContainers{first}",
        "spec.initContainers{second}",
        "spec.containers{main}",
    ]
    pod = kubeapi.get("pods", "ini", namespace)
    for name in ("first", "second"):
        init = status_of(pod, name, "initContainerStatuses")
        assert init["state"]["terminated"]["reason"] == "Completed"
        assert init["imageID"].startswith(f"{registry.host}/{repo}@sha256:")
    assert pod["status"]["phase"] == "Running"

    # kubectl debug: an ephemeral container is added to the running pod through its subresource.
    kubeapi.patch(
        "pods",
        "ini",
        {
            "spec": {
                "ephemeralContainers": [
                    {"name": "debugger", "image": img["debug"], "targetContainerName": "main"}
                ]
            }
        },
        namespace,
        subresource="ephemeralcontainers",
    )
    kubelet.run_pod(namespace, "ini")
    pulled = [e for e in pod_events(kubeapi, namespace, "ini") if e["reason"] == "Pulled"]
    assert pulled[-1]["involvedObject"]["fieldPath"] == "spec.ephemeralContainers{debugger}"
    eph = status_of(kubeapi.get("pods", "ini", namespace), "debugger", "ephemeralContainerStatuses")
    assert eph["imageID"] == f"{registry.host}/{repo}@{registry.tag_digest(repo, 'debug')}"
    assert eph["state"]["running"]["startedAt"]


def test_failed_init_container_blocks_the_pod(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "main")
    make_pod(
        kubeapi,
        namespace,
        "blocked",
        {"main": f"{registry.host}/{repo}:main"},
        init={"setup": f"{registry.host}/{repo}:absent"},
    )
    make_kubelet().run_pod(namespace, "blocked")
    assert not [e for e in pod_events(kubeapi, namespace, "blocked") if e["reason"] == "Pulled"]
    pod = kubeapi.get("pods", "blocked", namespace)
    assert status_of(pod, "main")["state"]["waiting"]["reason"] == "PodInitializing"
    assert status_of(pod, "setup", "initContainerStatuses")["imageID"] == ""
    assert pod["status"]["phase"] == "Pending"


def test_restart_reports_already_present_and_the_correlator_counts_repeats(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    make_pod(kubeapi, namespace, "rs", {"app": image})
    kubelet = make_kubelet(version="1.30")
    kubelet.run_pod(namespace, "rs")
    first_id = status_of(kubeapi.get("pods", "rs", namespace), "app")["containerID"]

    kubelet.restart_container(namespace, "rs", "app")
    present = [
        e for e in pod_events(kubeapi, namespace, "rs") if e["message"] == present_message("1.30", image)
    ]
    assert len(present) == 1 and present[0]["count"] == 1
    rv_before = int(present[0]["metadata"]["resourceVersion"])

    kubelet.restart_container(namespace, "rs", "app")
    again = [
        e for e in pod_events(kubeapi, namespace, "rs") if e["message"] == present_message("1.30", image)
    ]
    assert len(again) == 1, "a repeat PATCHes the same event"
    assert again[0]["metadata"]["name"] == present[0]["metadata"]["name"]
    assert again[0]["count"] == 2 and int(again[0]["metadata"]["resourceVersion"]) > rv_before
    assert again[0]["firstTimestamp"] == present[0]["firstTimestamp"]
    patches = kubeapi.requests("PATCH", f"/api/v1/namespaces/{namespace}/events/")
    assert [r.user for r in patches] == [f"system:node:{kubelet.node_of(namespace, 'rs')}"] * len(patches)
    assert len(patches) >= 1

    status = status_of(kubeapi.get("pods", "rs", namespace), "app")
    assert status["restartCount"] == 2
    assert status["containerID"] != first_id and CONTAINER_ID.fullmatch(status["containerID"])
    assert status["lastState"]["terminated"]["exitCode"] == 137


def test_ten_distinct_messages_are_combined_like_client_go(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    names = [f"c{i:02d}" for i in range(11)]
    for n in names:
        registry.push_image(repo, n)
    make_pod(kubeapi, namespace, "many", {n: f"{registry.host}/{repo}:{n}" for n in names})
    make_kubelet(version="1.30", pull_duration=FIXED_PULL).run_pod(namespace, "many")
    pulled = [e for e in pod_events(kubeapi, namespace, "many") if e["reason"] == "Pulled"]
    assert [e["message"].startswith("(combined from similar events): ") for e in pulled] == [False] * 9 + [
        True
    ]
    combined = pulled[-1]
    assert combined["count"] == 2  # the eleventh pull PATCHed the combined event
    # client-go's patch carries count, lastTimestamp and message only: the stored involvedObject stays the
    # first combined event's (c09) while the message now names c10's image.
    assert combined["involvedObject"]["fieldPath"] == "spec.containers{c09}"
    assert combined["message"].endswith(
        f'"{registry.host}/{repo}:c10" in 1.234s (1.234s including waiting).'
        f" Image size: {expected_size(registry, repo, 'c10')} bytes."
    )
    assert combined["reportingComponent"] == ""  # the aggregator's copy drops it
    assert isinstance(parse_pull(combined), Pull)


# ---------------------------------------------------------------------------------------------------
# Delayed imageID, forged events, identities


def test_hold_status_posts_the_event_before_the_image_id(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    pushed = registry.push_image(repo, "1.0")
    make_pod(kubeapi, namespace, "held", {"app": f"{registry.host}/{repo}:1.0"})
    kubelet = make_kubelet()
    kubelet.run_pod(namespace, "held", hold_status=True)
    assert any(e["reason"] == "Pulled" for e in pod_events(kubeapi, namespace, "held"))
    pod = kubeapi.get("pods", "held", namespace)
    assert not any(s.get("imageID") for s in pod["status"].get("containerStatuses") or [])
    kubelet.release_status(namespace, "held")
    pod = kubeapi.get("pods", "held", namespace)
    assert status_of(pod, "app")["imageID"].endswith(pushed.digest)


def test_image_id_delay_in_background_mode(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "1.0")
    kubelet = make_kubelet(image_id_delay=2.0).start()
    seen: list[Obj] = []
    done = threading.Event()

    def on_pulled() -> None:
        # A watcher that reads the pod as soon as it sees Pulled, like the listener does.
        rv = str(kubeapi.resource_version)
        while not done.is_set():
            for ch in kubeapi.store.changes_after(int(rv)):
                rv = str(ch.rv)
                if ch.key[0] == "events" and ch.obj.get("reason") == "Pulled":
                    seen.append(kubeapi.get("pods", "slow", namespace))
                    done.set()
            with kubeapi.store.cond:
                kubeapi.store.cond.wait(0.2)

    t = threading.Thread(target=on_pulled, daemon=True)
    t.start()
    make_pod(kubeapi, namespace, "slow", {"app": f"{registry.host}/{repo}:1.0"})
    assert done.wait(10)
    assert not status_of(seen[0], "app").get("imageID")
    kubelet.wait_idle(10)
    assert status_of(kubeapi.get("pods", "slow", namespace), "app")["imageID"]
    done.set()
    t.join(5)


def test_forged_event_is_posted_by_someone_else(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    make_pod(kubeapi, namespace, "victim", {"app": image})
    kubelet = make_kubelet(version="1.30")
    forged = kubelet.post_pulled(
        namespace,
        "victim",
        "app",
        f"{registry.host}/{repo}:evil",
        username="system:serviceaccount:default:mallory",
    )
    assert forged["reportingComponent"] == "kubelet" and forged["source"]["component"] == "kubelet"
    assert forged["involvedObject"]["fieldPath"] == "spec.containers{app}"
    posts = kubeapi.requests("POST", f"/api/v1/namespaces/{namespace}/events")
    assert [r.user for r in posts] == ["system:serviceaccount:default:mallory"]
    # Looks exactly like the real thing to a parser; only the pod status can tell.
    assert isinstance(parse_pull(forged), Pull)
    pod = kubeapi.get("pods", "victim", namespace)
    assert not (pod.get("status") or {}).get("containerStatuses")

    odd = kubelet.post_pulled(
        namespace,
        "victim",
        "app",
        image,
        reporting_component="not-kubelet",
        source_component="mallory",
        message="hello",
    )
    assert (odd["reportingComponent"], odd["source"]["component"], odd["message"]) == (
        "not-kubelet",
        "mallory",
        "hello",
    )


def test_writes_use_node_and_scheduler_identities(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "1.0")
    make_pod(kubeapi, namespace, "who", {"app": f"{registry.host}/{repo}:1.0"})
    kubelet = make_kubelet(nodes=["worker-a"])
    kubelet.run_pod(namespace, "who")
    by_kind: dict[str, set[str]] = {}
    for r in kubeapi.requests():
        if r.method == "GET":
            continue
        kind = "status" if r.route.endswith("/status") else "events" if "/events" in r.route else "pods"
        by_kind.setdefault(kind, set()).add(r.user)
    assert by_kind["events"] == {"system:node:worker-a"}
    assert by_kind["pods"] == {"system:kube-scheduler"}  # the binding
    assert by_kind["status"] == {
        "system:kube-scheduler",
        "system:node:worker-a",
    }  # PodScheduled, then kubelet


def test_least_loaded_scheduling(kubeapi: FakeKubeAPI, namespace: str, make_kubelet: KubeletFactory) -> None:
    kubelet = make_kubelet(
        resolve_digest=lambda image: "sha256:" + "cd" * 32,
        nodes=["n1", "n2", "n3"],
        scheduling="least-loaded",
    )
    make_pod(kubeapi, namespace, "pinned", {"app": "busybox:1"}, node="n1")
    kubelet.run_pod(namespace, "pinned")
    for name in ("x", "y", "z"):
        make_pod(kubeapi, namespace, name, {"app": "busybox:1"})
        kubelet.run_pod(namespace, name)
    placed = sorted(kubeapi.get("pods", n, namespace)["spec"]["nodeName"] for n in ("pinned", "x", "y", "z"))
    assert placed == ["n1", "n1", "n2", "n3"]


# ---------------------------------------------------------------------------------------------------
# Background mode, seen through the real kubernetes client


def test_background_mode_as_seen_by_the_kubernetes_client_watch(
    kubeapi: FakeKubeAPI,
    kubeconfig: str,
    registry: RegistryServer,
    repo: str,
    namespace: str,
    make_kubelet: KubeletFactory,
) -> None:
    pushed = registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    api_client = client.ApiClient(cfg)
    core = client.CoreV1Api(api_client)
    start_rv = core.list_namespaced_event(namespace).metadata.resource_version

    received: list[Any] = []
    got_all = threading.Event()
    w = watch.Watch()

    def watch_events() -> None:
        for ev in w.stream(
            core.list_namespaced_event,
            namespace,
            field_selector="reason=Pulled",
            resource_version=start_rv,
            timeout_seconds=20,
        ):
            received.append(ev)
            if len(received) >= 3:
                got_all.set()
                w.stop()

    t = threading.Thread(target=watch_events, daemon=True)
    t.start()
    kubelet = make_kubelet(version="1.35", nodes=["node-1"]).start()
    for name in ("w1", "w2", "w3"):
        core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image=image)]),
            ),
        )
    assert got_all.wait(20), received
    kubelet.wait_idle(10)
    t.join(5)
    api_client.close()

    assert [ev["type"] for ev in received] == ["ADDED"] * 3
    events = [ev["object"] for ev in received]
    assert [e.involved_object.name for e in events] == ["w1", "w2", "w3"]
    rvs = [int(e.metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(start_rv)
    for e in events:
        assert isinstance(e, client.CoreV1Event)
        assert e.involved_object.field_path == "spec.containers{app}"
        assert e.involved_object.kind == "Pod" and e.involved_object.api_version == "v1"
        assert e.source.component == "kubelet" and e.source.host == "node-1"
        assert e.reporting_component == "kubelet" and e.reporting_instance == "node-1"
        assert e.count == 1 and e.type == "Normal"
        assert e.first_timestamp is not None and e.last_timestamp is not None
    assert events[0].message.startswith(f'Successfully pulled image "{image}" in ')
    assert [e.message for e in events[1:]] == [present_message("1.35", image)] * 2
    for name in ("w1", "w2", "w3"):
        pod = kubeapi.get("pods", name, namespace)
        assert status_of(pod, "app")["imageID"] == f"{registry.host}/{repo}@{pushed.digest}"
        assert pod["status"]["phase"] == "Running"


def test_background_mode_starts_ephemeral_containers_when_added(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    registry.push_image(repo, "1.0")
    registry.push_image(repo, "debug")
    kubelet = make_kubelet().start()
    make_pod(kubeapi, namespace, "bg", {"app": f"{registry.host}/{repo}:1.0"})
    kubelet.wait_idle(10)
    # kubectl debug: the kubelet learns of the new ephemeral container from its pod watch (MODIFIED).
    kubeapi.patch(
        "pods",
        "bg",
        {"spec": {"ephemeralContainers": [{"name": "dbg", "image": f"{registry.host}/{repo}:debug"}]}},
        namespace,
        subresource="ephemeralcontainers",
    )
    kubelet.wait_idle(10)
    eph = status_of(kubeapi.get("pods", "bg", namespace), "dbg", "ephemeralContainerStatuses")
    assert eph["imageID"].endswith(str(registry.tag_digest(repo, "debug")))
    pulled = [e for e in pod_events(kubeapi, namespace, "bg") if e["reason"] == "Pulled"]
    assert pulled[-1]["involvedObject"]["fieldPath"] == "spec.ephemeralContainers{dbg}"


# ---------------------------------------------------------------------------------------------------
# Go formatting


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (313_000_000, "313ms"),
        (313_456_789, "313.456789ms"),
        (1_234_567_891, "1.234567891s"),
        (1_000_000_000, "1s"),
        (61_500_000_000, "1m1.5s"),
        (3_600_000_000_000, "1h0m0s"),
        (-2_000_000, "-2ms"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_version_parsing() -> None:
    assert str(KubeletVersion.parse("v1.30.2")) == "1.30"
    with pytest.raises(ValueError):
        KubeletVersion.parse("2.0")


def test_in_process_transport_writes_the_same_objects(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    pushed = registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    make_pod(kubeapi, namespace, "ip", {"app": image})
    kubelet = make_kubelet(transport="inprocess", version="1.29", pull_duration=FIXED_PULL)
    kubelet.run_pod(namespace, "ip")
    assert not kubeapi.requests()  # nothing over HTTP
    pulled = [e for e in pod_events(kubeapi, namespace, "ip") if e["reason"] == "Pulled"]
    assert [e["message"] for e in pulled] == [pulled_message("1.29", image, 0)]
    assert status_of(kubeapi.get("pods", "ip", namespace), "app")["imageID"].endswith(pushed.digest)


def test_in_process_background_mode_relists_after_a_compaction(
    kubeapi: FakeKubeAPI, registry: RegistryServer, repo: str, namespace: str, make_kubelet: KubeletFactory
) -> None:
    # Found by the soak run: a kubelet whose position was compacted away (410 over HTTP) kept asking for
    # it forever and ran no more pods.
    registry.push_image(repo, "1.0")
    image = f"{registry.host}/{repo}:1.0"
    kubelet = make_kubelet(transport="inprocess", pull_duration=FIXED_PULL).start()
    with kubelet._lock:  # the watch thread stops on the first change it sees, behind the next ones
        make_pod(kubeapi, namespace, "before", {"app": image})
        make_pod(kubeapi, namespace, "after", {"app": image})
        kubeapi.compact()
    kubelet.wait_idle(timeout=30)
    for name in ("before", "after"):
        assert kubeapi.get("pods", name, namespace)["status"]["phase"] == "Running"
