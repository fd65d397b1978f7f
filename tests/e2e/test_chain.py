"""The whole chain, end to end: manifests rendered by kustomize loaded into the fake API server (admission
chain + RBAC), the webhook under gunicorn over TLS with certificates from certs/generate.sh, the listener
as its own process with its ServiceAccount's token, a real registry with token auth, the fake Harbor,
and a real store (Redis, then the same suite on SQLite)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kubelet import Kubelet
from tests.harness.world import SYSTEM_NS, World

pytestmark = pytest.mark.timeout(600)

TAG_RE = re.compile(r"deployed_(?P<ns>[a-z0-9-]+)_\d{8}-\d{6}")


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp(f"world-{request.param}"), store_kind=request.param)
    w.start()
    yield w
    w.stop()


def deployed_tags(world: World, repository: str) -> dict[str, str]:
    return {t: d for t, d in world.registry_tags(repository).items() if t.startswith("deployed_")}


def created(world: World, image: str) -> list[dict[str, object]]:
    return [e for e in world.ledger() if e["image"] == image and e["outcome"] == "created"]


def wait_tagged(world: World, repository: str, digests: set[str], timeout: float = 60) -> None:
    world.wait_for(
        lambda: set(deployed_tags(world, repository).values()) >= digests,
        timeout,
        f"{repository} to be tagged on {sorted(digests)}",
    )


def wait_listener_idle(world: World) -> None:
    """The listener has handled every Pulled event there is (its seen counter caught up) and has no queue."""
    world.wait_for(lambda: world.metric("pulltag_queue_depth") == 0, 30, "the listener's queue to drain")


def test_deployment_over_two_nodes_gets_exactly_one_tag_per_digest(world: World) -> None:
    web = world.push("shop/web", "1.4.2")
    sidecar = world.push("shop/sidecar", "0.9", kind="index")
    web_digest = world.registry.tag_digest("shop/web", "1.4.2")
    sidecar_digest = world.registry.tag_digest("shop/sidecar", "0.9")
    assert web_digest and sidecar_digest

    pods = world.create_deployment("shop", "web", 3, {"web": web, "sidecar": sidecar})
    world.wait_pods_running(pods)
    assert {world.kubelet.node_of("shop", p.name) for p in pods} == {"node-1", "node-2"}
    wait_tagged(world, "shop/web", {web_digest})
    wait_tagged(world, "shop/sidecar", {sidecar_digest})
    wait_listener_idle(world)

    # exactly one tag per digest (scope image), named from the template, on the pulled digest
    for repository, digest in (("shop/web", web_digest), ("shop/sidecar", sidecar_digest)):
        tags = deployed_tags(world, repository)
        assert list(tags.values()) == [digest], tags
        (tag,) = tags
        assert TAG_RE.fullmatch(tag) and TAG_RE.fullmatch(tag).group("ns") == "shop"  # type: ignore[union-attr]
    host = world.registry.host
    assert len(created(world, f"{host}/shop/web")) == 1
    assert len(created(world, f"{host}/shop/sidecar")) == 1
    # the admission records name the final pod names (generateName resolved) and the owner
    records = {r.uid: r for r in world.admissions()}
    for pod in pods:
        record = records[pod.uid]
        assert record.name == pod.name and record.owner == "ReplicaSet/web-5c8f7b"
        assert record.images["containers"] == {"web": web, "sidecar": sidecar}
    # one ImageTagged event per created tag, on a pod of the deployment
    tagged = [e for e in world.events("ImageTagged", "shop") if "shop/web@" in e["message"] or
              "shop/sidecar@" in e["message"]]  # fmt: skip
    assert len(tagged) == 2
    assert {e["involvedObject"]["name"] for e in tagged} <= {p.name for p in pods}
    assert all(e["type"] == "Normal" for e in tagged)


def test_init_and_ephemeral_containers_are_tagged(world: World) -> None:
    init = world.push("shop/migrate", "3")
    app = world.push("shop/api", "2")
    debug = world.push("shop/debug", "1")
    pod = world.create_pod("shop", {"api": app}, init_containers={"migrate": init}, generate_name="api-")
    world.wait_pods_running([pod])
    # an ephemeral container added through the pod's subresource, as `kubectl debug` does
    obj = world.api.get("pods", pod.name, "shop")
    obj["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": debug, "targetContainerName": "api"}]
    status, body = world.api_request(
        "PUT", f"/api/v1/namespaces/shop/pods/{pod.name}/ephemeralcontainers", obj
    )
    assert status == 200, body
    # the validating webhook recorded the ephemeral container (pods/ephemeralcontainers UPDATE)
    record = next(r for r in world.admissions() if r.uid == pod.uid)
    assert record.images["ephemeralContainers"] == {"debugger": debug}
    for repository, tag in (("shop/migrate", "3"), ("shop/api", "2"), ("shop/debug", "1")):
        digest = world.registry.tag_digest(repository, tag)
        assert digest
        wait_tagged(world, repository, {digest})
        assert len(deployed_tags(world, repository)) == 1


@pytest.mark.parametrize("version", ["1.18", "1.25", "1.29", "1.35"])
def test_each_kubelet_version_wording_is_understood(world: World, version: str) -> None:
    repository = f"shop/v{version.replace('.', '')}"
    image = world.push(repository, "1")
    digest = world.registry.tag_digest(repository, "1")
    assert digest
    kubelet = Kubelet(world.api, world._resolve_digest, nodes=("node-old",), version=version)
    pod = world.create_pod("shop", {"app": image}, generate_name="old-", labels={"kubelet": "manual"})
    kubelet.run_pod("shop", pod.name)
    wait_tagged(world, repository, {digest})
    assert list(deployed_tags(world, repository).values()) == [digest]


def test_dry_run_create_records_nothing(world: World) -> None:
    image = world.push("shop/dry", "1")
    before = len(world.admissions())
    status, _ = world.api_request(
        "POST",
        "/api/v1/namespaces/shop/pods?dryRun=All",
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "dry-", "namespace": "shop"},
         "spec": {"containers": [{"name": "app", "image": image}]}},
    )  # fmt: skip
    assert status == 201
    assert len(world.admissions()) == before


def test_kube_system_and_opted_out_pods_are_left_alone(world: World) -> None:
    image = world.push("shop/quiet", "1")
    digest = world.registry.tag_digest("shop/quiet", "1")
    before = world.metric("pulltag_pulls_total", outcome="unadmitted")
    system_pod = world.create_pod("kube-system", {"app": image}, generate_name="sys-")
    optout_ns = world.create_pod("optout", {"app": image}, generate_name="opt-")
    labelled = world.create_pod(
        "shop", {"app": image}, generate_name="lab-", labels={"pulltag.dev/ignore": "true"}
    )
    world.wait_pods_running([system_pod, optout_ns, labelled])
    uids = {r.uid for r in world.admissions()}
    assert not uids & {system_pod.uid, optout_ns.uid, labelled.uid}
    for pod in (system_pod, optout_ns, labelled):
        annotations = world.api.get("pods", pod.name, pod.namespace)["metadata"].get("annotations") or {}
        assert "pulltag.dev/images" not in annotations
    # the listener saw the three Pulled events, found no admission record, and tagged nothing
    world.wait_for(
        lambda: world.metric("pulltag_pulls_total", outcome="unadmitted") >= before + 3,
        30,
        "the three pulls to be rejected as unadmitted",
    )
    wait_listener_idle(world)
    assert digest not in deployed_tags(world, "shop/quiet").values()


def test_forged_pulled_event_tags_nothing(world: World) -> None:
    image = world.push("shop/forged", "1")
    other = world.push("shop/forged-other", "1")
    pod = world.create_pod("shop", {"app": image}, generate_name="forge-")
    world.wait_pods_running([pod])
    wait_tagged(world, "shop/forged", {world.registry.tag_digest("shop/forged", "1") or ""})
    before = world.metric("pulltag_pulls_total", outcome="not_kubelet")
    # a user who may create events claims the kubelet pulled another image into this pod
    world.kubelet.post_pulled("shop", pod.name, "app", other, reporting_component="not-kubelet",
                              source_component="not-kubelet")  # fmt: skip
    world.wait_for(
        lambda: world.metric("pulltag_pulls_total", outcome="not_kubelet") > before,
        30,
        "the forgery to be counted",
    )
    assert deployed_tags(world, "shop/forged-other") == {}


def test_pod_created_while_webhook_down_is_admitted_not_tagged_and_counted(world: World) -> None:
    image = world.push("shop/nohook", "1")
    digest = world.registry.tag_digest("shop/nohook", "1")
    assert world.webhook.process is not None
    before = world.metric("pulltag_pulls_total", outcome="unadmitted")
    world.webhook.process.stop()
    try:
        pod = world.create_pod("shop", {"app": image}, generate_name="nohook-")  # failurePolicy Ignore
    finally:
        world.webhook.start()
        world.api.route_service(SYSTEM_NS, "pulltag-webhook", 443, target_port=world.webhook.port)
    world.wait_pods_running([pod])
    assert pod.uid not in {r.uid for r in world.admissions()}
    world.wait_for(
        lambda: world.metric("pulltag_pulls_total", outcome="unadmitted") >= before + 1,
        30,
        "unadmitted count",
    )
    wait_listener_idle(world)
    assert digest not in deployed_tags(world, "shop/nohook").values()


def test_tag_moved_between_admission_and_pull_tags_the_pulled_digest(world: World) -> None:
    image = world.push("shop/moving", "stable")
    first = world.registry.tag_digest("shop/moving", "stable")
    world.kubelet.stop()  # hold the pull until the tag has moved
    try:
        pod = world.create_pod("shop", {"app": image}, generate_name="mv-")
        world.push("shop/moving", "stable")
        second = world.registry.tag_digest("shop/moving", "stable")
        assert first != second
    finally:
        world.kubelet.start()
    world.wait_pods_running([pod])
    wait_tagged(world, "shop/moving", {second or ""})
    wait_listener_idle(world)
    assert list(deployed_tags(world, "shop/moving").values()) == [second]


def test_harbor_images_are_tagged_through_the_harbor_api(world: World) -> None:
    assert world.harbor is not None
    repository = "library/team/harbor-app"
    digest = world.harbor.add_artifact(repository, ["1.0"])
    pod = world.create_pod("ops", {"app": f"{world.harbor.host}/{repository}:1.0"}, generate_name="hb-")
    world.wait_pods_running([pod])

    def harbor_tags() -> list[str]:
        assert world.harbor is not None
        artifact = world.harbor.repositories[repository][digest]
        return [t for t in artifact.tags if t.startswith("deployed_")]

    world.wait_for(lambda: len(harbor_tags()) == 1, 60, "the Harbor artifact to be tagged")
    wait_listener_idle(world)
    (tag,) = harbor_tags()
    assert TAG_RE.fullmatch(tag) and tag.startswith("deployed_ops_")


def test_listener_started_after_the_pods_ran_catches_up(world: World, tmp_path: Path) -> None:
    assert world.listener is not None
    world.listener.stop()
    image = world.push("shop/late", "1")
    digest = world.registry.tag_digest("shop/late", "1")
    pod = world.create_pod("shop", {"app": image}, generate_name="late-")
    world.wait_pods_running([pod])
    # the events are gone (TTL) by the time the listener comes back: only the catch-up can find the pod
    for event in world.events("Pulled", "shop"):
        world.api.delete("events", event["metadata"]["name"], "shop")
    world.start_listener_process()
    wait_tagged(world, "shop/late", {digest or ""})
    assert list(deployed_tags(world, "shop/late").values()) == [digest]


def test_every_pull_was_handled_once(world: World) -> None:
    """Across the whole module: no digest got two tags for one scope."""
    ledger = world.ledger()
    keys = Counter((e["image"], e["digest"]) for e in ledger if e["outcome"] == "created")
    assert keys and max(keys.values()) == 1, keys
