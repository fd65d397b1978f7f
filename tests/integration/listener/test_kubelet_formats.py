"""Each kubelet message format, posted by the simulated kubelet, ends in exactly one tag on the digest
that reached the node; a tag moved between admission and pull tags the pulled digest."""

from __future__ import annotations

import json

import pytest

from tests.harness.kubelet import Kubelet, RegistryResolver
from tests.integration.listener.helpers import ANNOTATION, Env, wait_for

VERSIONS = ["1.18", "1.20", "1.26", "1.28", "1.30", "1.35"]


def _create_pod(env: Env, name: str, image: str) -> None:
    env.api.create(
        "pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": env.namespace,
                "annotations": {ANNOTATION: json.dumps({"containers": {"app": image}})},
            },
            "spec": {"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}]},
        },
        env.namespace,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_each_message_format_ends_in_exactly_one_tag(env: Env, version: str) -> None:
    repository, digest, image = env.image()
    running = env.start_listener()
    kubelet = Kubelet(env.api, RegistryResolver(), nodes=("node-1",), version=version)
    _create_pod(env, "fmt-1", image)
    kubelet.run_pod(env.namespace, "fmt-1")
    _create_pod(env, "fmt-2", image)  # same node, same image: "already present on machine"
    kubelet.run_pod(env.namespace, "fmt-2")
    messages = [e["message"] for e in env.pod_events("Pulled")]
    assert any(m.startswith("Successfully pulled image") for m in messages)
    assert any("already present on machine" in m for m in messages)
    wait_for(lambda: running.pulls("confirmed") == 2, what="both pulls confirmed")
    wait_for(lambda: env.tags_on(repository, digest), what="the tag")
    wait_for(lambda: running.listener.current and running.listener.current.tagger.queue.idle(), what="idle")
    tags = env.prefixed_tags(repository)
    assert len(tags) == 1
    assert env.registry.tag_digest(repository, tags[0]) == digest


def test_tag_moved_between_admission_and_pull_tags_the_pulled_digest(env: Env) -> None:
    repository, old_digest, image = env.image("v1")
    new_digest = env.registry.seed_image(repository, "v1")  # v1 now points at another image
    assert new_digest != old_digest
    running = env.start_listener()
    kubelet = Kubelet(env.api, RegistryResolver(), nodes=("node-1",), version="1.30")
    _create_pod(env, "moved-1", image)
    kubelet.run_pod(env.namespace, "moved-1")
    wait_for(lambda: env.tags_on(repository, new_digest), what="the tag on the pulled digest")
    wait_for(lambda: running.listener.current and running.listener.current.tagger.queue.idle(), what="idle")
    assert env.tags_on(repository, old_digest) == []
    assert len(env.prefixed_tags(repository)) == 1


def test_image_id_written_late_is_still_tagged(env: Env) -> None:
    repository, digest, image = env.image()
    running = env.start_listener()
    kubelet = Kubelet(env.api, RegistryResolver(), nodes=("node-1",), image_id_delay=1.0).start()
    try:
        _create_pod(env, "late-1", image)
        wait_for(lambda: env.tags_on(repository, digest), what="the tag once the imageID is written")
    finally:
        kubelet.stop()
    assert running.pulls("no_digest") == 0
