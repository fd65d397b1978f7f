"""Forged Pulled events tag nothing.

Each case starts from a pull that *would* be tagged (an admitted pod, left alone by the simulated kubelet,
whose status carries the imageID of a real image in the token-auth docker-registry) and changes exactly
one thing, posted by someone who may create events but is not a kubelet. The control case, changing
nothing, is tagged: so each forgery's "no tag" is the listener's decision, not a broken setup.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness.world import Pod, World
from tests.security.conftest import deployed_tags, running_status, set_container_status, wait_idle

pytestmark = pytest.mark.timeout(120)

MANUAL = {"app": "sec", "kubelet": "manual"}  # the World's background kubelet leaves these pods alone


@dataclass
class Scene:
    """An admitted pod running `image` (repository `repo`) in container `app`; `other` is a second
    image in another repository, which the pod never ran."""

    pod: Pod
    repo: str
    image: str
    digest: str
    other_repo: str
    other: str
    other_digest: str


def _push(world: World, stem: str) -> tuple[str, str, str]:
    repo = f"shop/{stem}-{uuid.uuid4().hex[:6]}"
    image = world.push(repo, "1")
    digest = world.registry.tag_digest(repo, "1")
    assert digest
    return repo, image, digest


def _scene(world: World, *, admitted: bool = True, status: str = "own") -> Scene:
    repo, image, digest = _push(world, "forged")
    other_repo, other, other_digest = _push(world, "other")
    if admitted:
        pod = world.create_pod("shop", {"app": image}, generate_name="sec-", labels=MANUAL)
    else:
        # Created straight into the API's storage: no admission webhook saw it, so no record and no
        # annotation, though it runs a real image.
        name = f"sec-unadmitted-{uuid.uuid4().hex[:5]}"
        obj = world.api.create(
            "pods",
            {"metadata": {"name": name, "namespace": "shop", "labels": MANUAL},
             "spec": {"containers": [{"name": "app", "image": image}], "nodeName": "node-1"}},
            "shop",
        )  # fmt: skip
        pod = Pod("shop", name, obj["metadata"]["uid"], {"app": image})
    host = world.registry.host
    if status == "own":
        set_container_status(
            world, "shop", pod.name, [running_status("app", image, f"{host}/{repo}@{digest}")]
        )
    elif status == "other":
        set_container_status(
            world, "shop", pod.name, [running_status("app", image, f"{host}/{other_repo}@{other_digest}")]
        )
    elif status == "none":
        waiting = running_status("app", image, "")
        waiting["state"] = {"waiting": {"reason": "ContainerCreating"}}
        set_container_status(world, "shop", pod.name, [waiting])
    return Scene(pod, repo, image, digest, other_repo, other, other_digest)


Post = Callable[[World, Scene], dict[str, Any]]


def _post(world: World, scene: Scene, **overrides: Any) -> dict[str, Any]:
    container = overrides.pop("container", "app")
    image = overrides.pop("image", scene.image)
    return world.kubelet.post_pulled("shop", scene.pod.name, container, image, **overrides)


# (case id, how the scene is built, the forged event, the outcome the listener must count)
CASES: list[tuple[str, dict[str, Any], Post, str]] = [
    (
        "reported-by-another-component",
        {},
        lambda w, s: _post(w, s, reporting_component="not-kubelet", source_component="not-kubelet"),
        "not_kubelet",
    ),
    (
        "source-kubelet-but-reporter-not",
        {},
        lambda w, s: _post(w, s, reporting_component="kubelet-impostor"),
        "not_kubelet",
    ),
    (
        "image-not-in-the-pod",
        {},
        lambda w, s: _post(w, s, image=s.other),
        "mismatch",
    ),
    (
        "container-not-in-the-pod",
        {},
        lambda w, s: _post(w, s, container="ghost"),
        "mismatch",
    ),
    (
        "another-pods-uid",
        {},
        lambda w, s: _post(w, s, pod_uid=str(uuid.uuid4())),
        "mismatch",
    ),
    (
        "pod-not-admitted",
        {"admitted": False},
        lambda w, s: _post(w, s),
        "unadmitted",
    ),
    (
        "no-image-id",
        {"status": "none"},
        lambda w, s: _post(w, s),
        "no_digest",
    ),
    (
        "image-id-of-another-repository",
        {"status": "other"},
        lambda w, s: _post(w, s),
        "no_digest",
    ),
]


def test_control_an_unforged_pull_of_the_same_scene_is_tagged(world: World) -> None:
    scene = _scene(world)
    before = world.metric("pulltag_pulls_total", outcome="confirmed")
    _post(world, scene)
    world.wait_for(
        lambda: scene.digest in deployed_tags(world, scene.repo).values(), 30, "the control pull's tag"
    )
    assert world.metric("pulltag_pulls_total", outcome="confirmed") >= before + 1


@pytest.mark.parametrize(
    ("scene_options", "forge", "outcome"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_forged_pulled_event_is_counted_and_tags_nothing(
    world: World, scene_options: dict[str, Any], forge: Post, outcome: str
) -> None:
    scene = _scene(world, **scene_options)
    before = world.metric("pulltag_pulls_total", outcome=outcome)
    confirmed_before = world.metric("pulltag_pulls_total", outcome="confirmed")
    forge(world, scene)
    world.wait_for(
        lambda: world.metric("pulltag_pulls_total", outcome=outcome) >= before + 1,
        30,
        f"the forgery to be counted as {outcome}",
    )
    wait_idle(world)
    assert world.metric("pulltag_pulls_total", outcome="confirmed") == confirmed_before
    assert deployed_tags(world, scene.repo) == {}
    assert deployed_tags(world, scene.other_repo) == {}
    images = {scene.image, scene.other}
    host = world.registry.host
    names = {f"{host}/{scene.repo}", f"{host}/{scene.other_repo}"}
    assert not [e for e in world.ledger() if e["image"] in images | names], "a ledger entry for a forgery"
    assert not [
        e for e in world.events("ImageTagged", "shop") if e["involvedObject"]["name"] == scene.pod.name
    ]
