"""confirm() and admission_from_annotation(): every outcome, and the imageID shapes of each runtime."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from listener.confirm import Confirmed, Pending, Rejected, admission_from_annotation, confirm
from pulltag.store.base import AdmissionRecord

from .factories import DIGEST, OTHER_DIGEST, POD_UID, make_pod, make_pull


def _record(images: dict[str, dict[str, str]] | None = None, uid: str = POD_UID) -> AdmissionRecord:
    return AdmissionRecord(
        uid=uid, namespace="prod", name="web-0", images=images or {"containers": {"app": "nginx:1.25"}}
    )


def _status(
    image_id: str, name: str = "app", field: str = "containerStatuses"
) -> dict[str, list[dict[str, Any]]]:
    return {field: [{"name": "other", "imageID": "x"}, {"name": name, "imageID": image_id}]}


# --- the annotation ---------------------------------------------------------------------------------


def test_admission_from_annotation() -> None:
    images = {
        "containers": {"app": "nginx:1.25", "sidecar": "envoyproxy/envoy:v1.30"},
        "initContainers": {"init": "busybox"},
        "ephemeralContainers": {"debug": "ghcr.io/org/debug:1"},
    }
    record = admission_from_annotation(make_pod(images=images))
    assert record == AdmissionRecord(
        uid=POD_UID,
        namespace="prod",
        name="web-0",
        images=images,
        owner="StatefulSet/web",
        node="node-1",
        admitted_at=datetime(2026, 11, 26, 10, 14, tzinfo=UTC).timestamp(),
    )


def test_annotation_ignores_unknown_keys() -> None:
    record = admission_from_annotation(make_pod(annotation='{"containers":{"app":"nginx"},"future":[1]}'))
    assert record is not None
    assert record.images == {"containers": {"app": "nginx"}}


@pytest.mark.parametrize(
    "annotation",
    [
        "",
        "not json",
        "[]",
        "null",
        '"containers"',
        "{}",
        '{"containers": []}',
        '{"containers": {"app": 1}}',
        '{"containers": {"app": ""}}',
        '{"containers": {"": "nginx"}}',
        '{"containers": {"app": "nginx"}, "initContainers": "busybox"}',
        '{"containers": {"app": null}}',
        "[" * 100_000 + "]" * 100_000,
        '{"containers": {"app": "nginx"}' + " " * 300_000 + "}",
    ],
)
def test_garbage_annotations_give_none(annotation: str) -> None:
    assert admission_from_annotation(make_pod(annotation=annotation)) is None


@pytest.mark.parametrize(
    "pod",
    [
        None,
        [],
        "pod",
        {},
        {"metadata": None},
        {"metadata": {"uid": POD_UID, "namespace": "prod", "name": "web-0"}},
        {"metadata": {"uid": POD_UID, "namespace": "prod", "name": "web-0", "annotations": "x"}},
        {
            "metadata": {
                "uid": POD_UID,
                "namespace": "prod",
                "annotations": {"pulltag.dev/images": '{"containers":{"a":"b"}}'},
            }
        },
        {
            "metadata": {
                "uid": 5,
                "namespace": "prod",
                "name": "w",
                "annotations": {"pulltag.dev/images": '{"containers":{"a":"b"}}'},
            }
        },
        {
            "metadata": {
                "uid": POD_UID,
                "namespace": "prod",
                "name": "w",
                "annotations": {"pulltag.dev/images": 7},
            }
        },
    ],
)
def test_pods_without_a_usable_annotation(pod: Any) -> None:
    assert admission_from_annotation(pod) is None


def test_annotation_tolerates_odd_optional_fields() -> None:
    pod = make_pod()
    pod["metadata"]["ownerReferences"] = [None, {"kind": "ReplicaSet", "name": "rs", "controller": "yes"}]
    pod["metadata"]["creationTimestamp"] = "yesterday"
    pod["spec"] = None
    record = admission_from_annotation(pod)
    assert record is not None
    assert (record.owner, record.node, record.admitted_at) == (None, None, 0.0)


# --- confirm: every outcome --------------------------------------------------------------------------


def test_confirmed() -> None:
    pull = make_pull()
    result = confirm(pull, _record(), make_pod())
    assert result == Confirmed(
        pull=pull,
        digest=DIGEST,
        repository="library/nginx",
        registry="docker.io",
    )


@pytest.mark.parametrize(
    ("admitted", "message_image", "image_id", "registry", "repository"),
    [
        # containerd / CRI-O: the repository as pulled, with its registry host.
        ("nginx:1.25", "nginx:1.25", f"docker.io/library/nginx@{DIGEST}", "docker.io", "library/nginx"),
        # Docker (cri-dockerd): familiar names behind a scheme.
        ("nginx:1.25", "nginx:1.25", f"docker-pullable://nginx@{DIGEST}", "docker.io", "library/nginx"),
        # Docker Hub under an alias host still names the same repository.
        (
            "nginx:1.25",
            "nginx:1.25",
            f"registry-1.docker.io/library/nginx@{DIGEST}",
            "docker.io",
            "library/nginx",
        ),
        ("nginx:1.25", "nginx:1.25", f"index.docker.io/nginx@{DIGEST}", "docker.io", "library/nginx"),
        (
            "nginx",
            "docker.io/library/nginx:latest",
            f"docker.io/library/nginx@{DIGEST}",
            "docker.io",
            "library/nginx",
        ),
        (
            "harbor.example.com/team/app:v2",
            "harbor.example.com/team/app:v2",
            f"harbor.example.com/team/app@{DIGEST}",
            "harbor.example.com",
            "team/app",
        ),
        (
            "Localhost:5000/app:1",
            "Localhost:5000/app:1",
            f"localhost:5000/app@{DIGEST}",
            "Localhost:5000",
            "app",
        ),
        # A tag next to the digest in the imageID is ignored.
        ("quay.io/x/y:1", "quay.io/x/y:1", f"quay.io/x/y:1@{DIGEST}", "quay.io", "x/y"),
        # Pinned by digest: the status digest must be that digest.
        (
            f"nginx@{DIGEST}",
            f"nginx@{DIGEST}",
            f"docker.io/library/nginx@{DIGEST}",
            "docker.io",
            "library/nginx",
        ),
    ],
)
def test_confirmed_image_ids_of_each_runtime(
    admitted: str, message_image: str, image_id: str, registry: str, repository: str
) -> None:
    pull = make_pull(image=message_image)
    result = confirm(pull, _record({"containers": {"app": admitted}}), make_pod(statuses=_status(image_id)))
    assert isinstance(result, Confirmed), result
    assert (result.registry, result.repository, result.digest) == (registry, repository, DIGEST)


@pytest.mark.parametrize(
    ("kind", "field"),
    [("initContainers", "initContainerStatuses"), ("ephemeralContainers", "ephemeralContainerStatuses")],
)
def test_other_container_kinds_read_their_own_status_list(kind: str, field: str) -> None:
    pull = make_pull(container_kind=kind, container="init", image="busybox")
    record = _record({kind: {"init": "busybox"}})
    image_id = f"docker.io/library/busybox@{DIGEST}"
    assert isinstance(confirm(pull, record, make_pod(statuses=_status(image_id, "init", field))), Confirmed)
    # The same name in containerStatuses is not the init container's status.
    assert confirm(
        pull, record, make_pod(statuses=_status(image_id, "init", "containerStatuses"))
    ) == Pending("no_image_id")


def test_unadmitted() -> None:
    assert confirm(make_pull(), None, make_pod()) == Rejected("unadmitted", "no admission record")


@pytest.mark.parametrize(
    ("pull_changes", "record", "reason"),
    [
        ({"image": "nginx:1.26"}, None, "image"),
        ({"image": "evil.example.com/library/nginx:1.25"}, None, "image"),
        ({"image": "nginx"}, None, "image"),  # nginx:latest, not nginx:1.25
        ({"container": "sidecar"}, None, "unknown_container"),
        ({"container_kind": "initContainers"}, None, "unknown_container"),
        ({}, _record(uid="another-uid"), "pod_uid"),
    ],
)
def test_mismatch(pull_changes: dict[str, Any], record: AdmissionRecord | None, reason: str) -> None:
    result = confirm(make_pull(**pull_changes), record or _record(), make_pod())
    assert result == Rejected("mismatch", reason)


def test_equal_images_in_different_spelling_match() -> None:
    record = _record({"containers": {"app": "docker.io/library/nginx:1.25"}})
    assert isinstance(confirm(make_pull(image="nginx:1.25"), record, make_pod()), Confirmed)


def test_recreated_pod_with_the_same_name_is_a_mismatch() -> None:
    assert confirm(make_pull(), _record(), make_pod(uid="new-uid")) == Rejected("mismatch", "pod_recreated")


def test_pinned_digest_that_differs_from_the_status_is_a_mismatch() -> None:
    record = _record({"containers": {"app": f"nginx@{OTHER_DIGEST}"}})
    pull = make_pull(image=f"nginx@{OTHER_DIGEST}")
    assert confirm(pull, record, make_pod()) == Rejected("mismatch", "digest")


@pytest.mark.parametrize(
    ("image_id", "reason"),
    [
        (DIGEST, "local_image_id"),  # some containerd versions: the config digest, no repository
        ("ab" * 32, "local_image_id"),
        (f"docker://{DIGEST}", "local_image_id"),
        (f"docker.io/library/busybox@{DIGEST}", "other_repository"),
        (f"mirror.example.com/library/nginx@{DIGEST}", "other_repository"),
        (f"docker.io/myuser/nginx@{DIGEST}", "other_repository"),
    ],
)
def test_no_digest(image_id: str, reason: str) -> None:
    result = confirm(make_pull(), _record(), make_pod(statuses=_status(image_id)))
    assert result == Rejected("no_digest", reason)


@pytest.mark.parametrize("image_id", ["docker.io/library/nginx:1.25", "sha256:abc", "nginx@sha256:zz", "a b"])
def test_unparsable_image_id_is_no_digest(image_id: str) -> None:
    result = confirm(make_pull(), _record(), make_pod(statuses=_status(image_id)))
    assert isinstance(result, Rejected) and result.outcome == "no_digest"


@pytest.mark.parametrize(
    ("admitted", "message_image"),
    [
        ("nginx:1.25", "NGINX:1.25"),
        ("not a ref", "not a ref"),
        ("nginx:1.25", "nginx:bad tag"),
        ("UPPER", "UPPER"),
    ],
)
def test_invalid(admitted: str, message_image: str) -> None:
    result = confirm(make_pull(image=message_image), _record({"containers": {"app": admitted}}), make_pod())
    assert isinstance(result, Rejected) and result.outcome == "invalid", result


@pytest.mark.parametrize(
    ("statuses", "reason"),
    [
        ({}, "no_image_id"),
        ({"containerStatuses": None}, "no_image_id"),
        ({"containerStatuses": "x"}, "no_image_id"),
        ({"containerStatuses": []}, "no_image_id"),
        ({"containerStatuses": [None, 3]}, "no_image_id"),
        ({"containerStatuses": [{"name": "app"}]}, "no_image_id"),
        ({"containerStatuses": [{"name": "app", "imageID": ""}]}, "no_image_id"),
        ({"containerStatuses": [{"name": "app", "imageID": 5}]}, "no_image_id"),
    ],
)
def test_pending_until_the_kubelet_writes_an_image_id(statuses: dict[str, Any], reason: str) -> None:
    assert confirm(make_pull(), _record(), make_pod(statuses=statuses)) == Pending(reason)


def test_pending_without_a_pod() -> None:
    assert confirm(make_pull(), _record(), None) == Pending("pod_unknown")


def test_status_none() -> None:
    pod = make_pod()
    pod["status"] = None
    assert confirm(make_pull(), _record(), pod) == Pending("no_image_id")


def test_pod_without_metadata_is_a_mismatch() -> None:
    assert confirm(
        make_pull(), _record(), {"status": _status(f"docker.io/library/nginx@{DIGEST}")}
    ) == Rejected("mismatch", "pod_recreated")


def test_annotation_record_confirms_like_a_store_record() -> None:
    pod = make_pod()
    assert isinstance(confirm(make_pull(), admission_from_annotation(pod), pod), Confirmed)
    forged = make_pod(annotation=json.dumps({"containers": {"app": "nginx:1.26"}}))
    assert confirm(make_pull(), admission_from_annotation(forged), forged) == Rejected("mismatch", "image")
