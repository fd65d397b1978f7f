"""The pure admission decisions: table tests and properties."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulltag.contract import ANNOTATION
from pulltag.store.base import AdmissionRecord
from tests.harness.webhook import DIGEST, pod_review
from tests.unit.webhook.reviews import ephemeral_review
from webhook.patch import apply_patch, decode_patch
from webhook.review import (
    MAX_WARNING_LENGTH,
    BadReview,
    Target,
    decide_mutate,
    decide_validate,
    image_warnings,
    parse_review,
)

KNOWN = {"harbor.example.com", "registry.local:5000"}


def known(host: str) -> bool:
    return host in KNOWN


def mutate(review: dict[str, Any]) -> dict[str, Any]:
    return decide_mutate(parse_review(review)).response


def patched_object(review: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server would store it after applying our patch."""
    answer = mutate(review)["response"]
    obj = review["request"]["object"]
    if "patch" not in answer:
        return dict(obj)
    assert answer["patchType"] == "JSONPatch"
    result: dict[str, Any] = apply_patch(obj, decode_patch(answer["patch"]))
    return result


# --- envelope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ("x", "must be a JSON object"),
        ({}, "apiVersion must be one of"),
        ({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview"}, "apiVersion"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}, "kind must be AdmissionReview"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request is missing"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": []},
            "request must be an object",
        ),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}, "request.uid"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}},
            "request.uid",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}},
            "request.uid",
        ),
    ],
)
def test_envelope_errors_name_the_problem(body: Any, message: str) -> None:
    with pytest.raises(BadReview, match=message):
        parse_review(body)


def _set(review: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    review = copy.deepcopy(review)
    node: Any = review
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return review


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("request.dryRun", "yes", "request.dryRun must be a boolean"),
        ("request.operation", 1, "request.operation must be a string"),
        ("request.resource", "pods", "request.resource must be an object"),
        ("request.resource.resource", ["pods"], "request.resource.resource must be a string"),
        ("request.object", "pod", "request.object must be an object"),
        ("request.object", None, "request.object is required"),
        ("request.object.metadata", [], "request.object.metadata must be an object"),
        ("request.object.metadata.name", 5, "request.object.metadata.name must be a string"),
        ("request.object.metadata.labels", {"a": 1}, r"labels\['a'\] must be a string"),
        ("request.object.metadata.annotations", "x", "annotations must be an object"),
        ("request.object.metadata.ownerReferences", {}, "ownerReferences must be an array"),
        ("request.object.metadata.ownerReferences", [1], r"ownerReferences\[0\] must be an object"),
        ("request.object.spec", [], "request.object.spec must be an object"),
        ("request.object.spec.containers", {}, "containers must be an array"),
        ("request.object.spec.containers.0", "nginx", r"containers\[0\] must be an object"),
        ("request.object.spec.containers.0.image", 1.5, r"containers\[0\].image must be a string"),
        ("request.object.spec.containers.0.name", None, r"containers\[0\].name must be a string"),
        ("request.object.spec.nodeName", True, "nodeName must be a string"),
    ],
)
def test_wrong_types_are_bad_reviews(path: str, value: Any, message: str) -> None:
    with pytest.raises(BadReview, match=message):
        parse_review(_set(pod_review(), path, value))


# --- what is handled ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("request.operation", "UPDATE"),
        ("request.operation", "DELETE"),
        ("request.operation", "CONNECT"),
        ("request.resource", {"group": "", "version": "v1", "resource": "services"}),
        ("request.resource", {"group": "apps", "version": "v1", "resource": "pods"}),
        ("request.resource", {"group": "", "version": "v2", "resource": "pods"}),
        ("request.subResource", "ephemeralcontainers"),  # a CREATE of it does not exist
        ("request.subResource", "status"),
    ],
)
def test_other_resources_and_operations_are_allowed_untouched(path: str, value: Any) -> None:
    review = _set(pod_review(annotations={}), path, value)
    _assert_untouched(review)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("request.subResource", "status"),
        ("request.subResource", "resize"),
        ("request.subResource", None),  # a plain pod UPDATE
        ("request.operation", "CREATE"),
        ("request.operation", "DELETE"),
        ("request.resource", {"group": "", "version": "v1", "resource": "services"}),
        ("request.resource", {"group": "apps", "version": "v1", "resource": "pods"}),
    ],
)
def test_only_the_ephemeralcontainers_update_of_pods_is_handled(path: str, value: Any) -> None:
    _assert_untouched(_set(ephemeral_review(annotations={}), path, value))


def _assert_untouched(review: dict[str, Any]) -> None:
    for decision in (decide_mutate(parse_review(review)), decide_validate(parse_review(review), known, 1.0)):
        assert decision.response == {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "req-1", "allowed": True},
        }
        assert decision.outcome == "skipped"
        assert decision.record is None


def test_a_non_pod_object_of_any_shape_is_not_inspected() -> None:
    review = _set(pod_review(), "request.resource", {"group": "", "version": "v1", "resource": "configmaps"})
    review = _set(review, "request.object", {"data": {"a": [1, {"b": None}]}, "spec": "not-an-object"})
    assert decide_mutate(parse_review(review)).outcome == "skipped"


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_the_answer_echoes_api_version_kind_and_uid(version: str) -> None:
    answer = mutate(pod_review(api_version=version, uid="abc-123"))
    assert answer["apiVersion"] == version
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "abc-123"
    assert answer["response"]["allowed"] is True


# --- /mutate ---------------------------------------------------------------------------------------


def test_mutate_adds_the_annotations_map_when_the_pod_has_none() -> None:
    review = pod_review(
        name=None,
        generate_name="web-7d4b9c-",
        pod_uid=None,
        containers={"app": "nginx:1"},
        owner=("ReplicaSet", "web-7d4b9c"),
    )
    answer = mutate(review)["response"]
    assert decode_patch(answer["patch"]) == [
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {ANNOTATION: '{"containers":{"app":"nginx:1"}}'},
        }
    ]


def test_mutate_adds_one_key_to_an_existing_annotations_map() -> None:
    review = pod_review(
        annotations={"team": "shop"}, containers={"app": "nginx:1"}, init_containers={"init": "busybox"}
    )
    answer = mutate(review)["response"]
    assert decode_patch(answer["patch"]) == [
        {
            "op": "add",
            "path": "/metadata/annotations/pulltag.dev~1images",
            "value": '{"containers":{"app":"nginx:1"},"initContainers":{"init":"busybox"}}',
        }
    ]
    assert patched_object(review)["metadata"]["annotations"]["team"] == "shop"


def test_mutate_on_reinvocation_replaces_a_stale_annotation() -> None:
    first = pod_review(annotations={}, containers={"app": "nginx:1"})
    stored = patched_object(first)
    # Another webhook then pins the image to a digest; the API server calls us again.
    stored["spec"]["containers"][0]["image"] = f"nginx:1@{DIGEST}"
    second = copy.deepcopy(first)
    second["request"]["object"] = stored
    answer = mutate(second)["response"]
    assert decode_patch(answer["patch"]) == [
        {"op": "replace", "path": "/metadata/annotations/pulltag.dev~1images", "value": json.dumps(
            {"containers": {"app": f"nginx:1@{DIGEST}"}}, separators=(",", ":"))}
    ]  # fmt: skip


def test_mutate_twice_on_its_own_output_gives_no_patch() -> None:
    review = pod_review(containers={"app": "nginx:1"})
    again = copy.deepcopy(review)
    again["request"]["object"] = patched_object(review)
    decision = decide_mutate(parse_review(again))
    assert decision.outcome == "unchanged"
    assert "patch" not in decision.response["response"]
    assert "patchType" not in decision.response["response"]


def test_mutate_adds_metadata_when_missing() -> None:
    review = pod_review()
    del review["request"]["object"]["metadata"]
    assert patched_object(review)["metadata"] == {
        "annotations": {ANNOTATION: '{"containers":{"app":"nginx:1.27"}}'}
    }


@pytest.mark.parametrize("phase", ["mutate", "validate"])
def test_an_ignored_pod_gets_nothing(phase: str) -> None:
    review = parse_review(pod_review(labels={"pulltag.dev/ignore": "true"}))
    decision = decide_mutate(review) if phase == "mutate" else decide_validate(review, known, 1.0)
    assert decision.outcome == "ignored"
    assert decision.record is None
    assert set(decision.response["response"]) == {"uid", "allowed"}


@pytest.mark.parametrize("value", ["false", "True", "TRUE", " true", "yes", ""])
def test_only_the_exact_label_value_true_ignores(value: str) -> None:
    review = parse_review(pod_review(labels={"pulltag.dev/ignore": value}))
    assert decide_mutate(review).outcome == "patched"
    assert decide_validate(review, known, 1.0).outcome == "recorded"


# --- /validate -------------------------------------------------------------------------------------


def test_validate_builds_the_record_from_the_final_pod() -> None:
    review = pod_review(
        name="web-7d4b9c-x2x9q",
        generate_name="web-7d4b9c-",
        namespace="shop",
        pod_uid="uid-1",
        containers={
            "app": f"harbor.example.com/shop/web:2@{DIGEST}",
            "sidecar": "registry.local:5000/proxy:1",
        },
        init_containers={"migrate": "harbor.example.com/shop/migrate:2"},
        ephemeral_containers={"debug": "harbor.example.com/tools/debug:1"},
        owner=("ReplicaSet", "web-7d4b9c"),
        node="node-1",
    )
    decision = decide_validate(parse_review(review), known, 1700000000.5)
    assert decision.outcome == "recorded"
    assert decision.record == AdmissionRecord(
        uid="uid-1",
        namespace="shop",
        name="web-7d4b9c-x2x9q",
        images={
            "containers": {
                "app": f"harbor.example.com/shop/web:2@{DIGEST}",
                "sidecar": "registry.local:5000/proxy:1",
            },
            "initContainers": {"migrate": "harbor.example.com/shop/migrate:2"},
            "ephemeralContainers": {"debug": "harbor.example.com/tools/debug:1"},
        },
        owner="ReplicaSet/web-7d4b9c",
        node="node-1",
        admitted_at=1700000000.5,
    )
    assert decision.response["response"] == {"uid": "req-1", "allowed": True}


def test_validate_falls_back_to_the_request_name_and_namespace() -> None:
    review = pod_review(name="p1", namespace="ns1")
    meta = review["request"]["object"]["metadata"]
    del meta["name"], meta["namespace"]
    record = decide_validate(parse_review(review), known, 1.0).record
    assert record is not None
    assert (record.namespace, record.name) == ("ns1", "p1")


def test_only_the_controller_owner_counts() -> None:
    review = pod_review(owner=("ReplicaSet", "rs"))
    refs = review["request"]["object"]["metadata"]["ownerReferences"]
    refs.insert(0, {"kind": "Thing", "name": "other", "controller": False})
    record = decide_validate(parse_review(review), known, 1.0).record
    assert record is not None and record.owner == "ReplicaSet/rs"
    refs[1]["controller"] = False
    record = decide_validate(parse_review(review), known, 1.0).record
    assert record is not None and record.owner is None


def test_dry_run_warns_but_records_nothing() -> None:
    decision = decide_validate(
        parse_review(pod_review(dry_run=True, containers={"a": "quay.io/x/y:1"})), known, 1.0
    )
    assert decision.outcome == "dry_run"
    assert decision.record is None
    assert decision.response["response"]["warnings"] == [
        "pulltag: registry quay.io not configured, quay.io/x/y:1 will not be tagged"
    ]


def test_no_pod_uid_means_no_record() -> None:
    decision = decide_validate(parse_review(pod_review(pod_uid=None)), known, 1.0)
    assert decision.outcome == "incomplete"
    assert decision.record is None
    assert decision.response["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ({"containers": {"a": "harbor.example.com/x/y:1"}}, []),
        ({"containers": {"a": "registry.local:5000/x@" + DIGEST}}, []),
        (
            {"containers": {"a": "nginx"}},
            ["pulltag: registry docker.io not configured, nginx will not be tagged"],
        ),
        (
            {"containers": {"a": "Bad Image"}},
            ["pulltag: invalid image reference Bad Image, will not be tagged"],
        ),
        # one warning per distinct image, in container order
        (
            {"containers": {"a": "nginx", "b": "nginx"}, "initContainers": {"c": "x/UPPER"}},
            [
                "pulltag: registry docker.io not configured, nginx will not be tagged",
                "pulltag: invalid image reference x/UPPER, will not be tagged",
            ],
        ),
    ],
)
def test_warnings_table(images: dict[str, dict[str, str]], expected: list[str]) -> None:
    assert image_warnings(images, known) == expected


@given(st.text(min_size=0, max_size=2000))
def test_warnings_are_always_short_single_lines(image: str) -> None:
    for warning in image_warnings({"containers": {"a": image}}, known):
        assert len(warning) <= MAX_WARNING_LENGTH
        assert "\n" not in warning


# --- ephemeral containers (kubectl debug: UPDATE of pods/ephemeralcontainers) -----------------------

DEBUG_POD: dict[str, Any] = {
    "name": "web-7d4b9c-x2x9q",
    "namespace": "shop",
    "pod_uid": "uid-1",
    "containers": {"app": f"harbor.example.com/shop/web:2@{DIGEST}"},
    "init_containers": {"migrate": "harbor.example.com/shop/migrate:2"},
    "owner": ("ReplicaSet", "web-7d4b9c"),
    "node": "node-1",
    "annotations": {ANNOTATION: '{"containers":{"app":"harbor.example.com/shop/web:2@' + DIGEST + '"}}'},
}


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_validate_records_the_whole_pod_with_its_ephemeral_containers(version: str) -> None:
    review = ephemeral_review(
        api_version=version,
        old_ephemeral={"first": "harbor.example.com/tools/debug:1"},
        added={"second": "registry.local:5000/tools/shell:2"},
        **DEBUG_POD,
    )
    parsed = parse_review(review)
    assert parsed.target is Target.EPHEMERAL_CONTAINERS
    assert parsed.old_ephemeral == {"first"}
    decision = decide_validate(parsed, known, 1700000100.0)
    assert decision.outcome == "recorded"
    # The complete record, as at CREATE plus every ephemeral container: it replaces the CREATE record.
    assert decision.record == AdmissionRecord(
        uid="uid-1",
        namespace="shop",
        name="web-7d4b9c-x2x9q",
        images={
            "containers": {"app": f"harbor.example.com/shop/web:2@{DIGEST}"},
            "initContainers": {"migrate": "harbor.example.com/shop/migrate:2"},
            "ephemeralContainers": {
                "first": "harbor.example.com/tools/debug:1",
                "second": "registry.local:5000/tools/shell:2",
            },
        },
        owner="ReplicaSet/web-7d4b9c",
        node="node-1",
        admitted_at=1700000100.0,
    )
    assert decision.response == {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "response": {"uid": "req-1", "allowed": True},
    }


def test_an_ephemeral_update_warns_only_about_the_containers_it_adds() -> None:
    review = ephemeral_review(
        containers={"app": "quay.io/shop/web:1"},  # warned about at CREATE already
        old_ephemeral={"first": "docker.io/library/alpine:3"},  # warned about by the earlier debug
        added={"second": "busybox:1.36", "third": "Bad Image"},
    )
    decision = decide_validate(parse_review(review), known, 1.0)
    assert decision.response["response"]["warnings"] == [
        "pulltag: registry docker.io not configured, busybox:1.36 will not be tagged",
        "pulltag: invalid image reference Bad Image, will not be tagged",
    ]
    assert decision.record is not None
    assert decision.record.images["containers"] == {"app": "quay.io/shop/web:1"}  # recorded all the same


def test_without_an_old_object_every_ephemeral_container_counts_as_added() -> None:
    review = ephemeral_review(old_ephemeral={"first": "busybox:1"}, added={"second": "busybox:2"})
    review["request"]["oldObject"] = None
    decision = decide_validate(parse_review(review), known, 1.0)
    assert [w.split(", ")[1] for w in decision.warnings] == [
        "busybox:1 will not be tagged",
        "busybox:2 will not be tagged",
    ]


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_mutate_never_patches_an_ephemeral_update(version: str) -> None:
    # Even a stale annotation is left alone: the subresource keeps only spec.ephemeralContainers.
    decision = decide_mutate(parse_review(ephemeral_review(api_version=version, **DEBUG_POD)))
    assert decision.outcome == "ephemeral_unpatched"
    assert decision.response == {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "response": {"uid": "req-1", "allowed": True},
    }
    without_annotations = {**DEBUG_POD, "annotations": None}
    decision = decide_mutate(parse_review(ephemeral_review(**without_annotations)))
    assert set(decision.response["response"]) == {"uid", "allowed"}


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        ({"dry_run": True}, "dry_run"),
        ({"labels": {"pulltag.dev/ignore": "true"}}, "ignored"),
        ({"pod_uid": None}, "incomplete"),
    ],
)
def test_an_ephemeral_update_follows_the_create_rules(overrides: dict[str, Any], outcome: str) -> None:
    decision = decide_validate(parse_review(ephemeral_review(**overrides)), known, 1.0)
    assert decision.outcome == outcome
    assert decision.record is None
    assert decision.response["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("request.object", None, "request.object is required for a pod UPDATE of pods/ephemeralcontainers"),
        ("request.object.spec.ephemeralContainers.0.image", 7, r"ephemeralContainers\[0\].image must be"),
        ("request.oldObject", [], "request.oldObject must be an object"),
        ("request.oldObject.spec", "x", "request.oldObject.spec must be an object"),
        ("request.oldObject.spec.ephemeralContainers", {}, "request.oldObject.spec.ephemeralContainers must"),
        ("request.oldObject.spec.ephemeralContainers.0", 1, r"oldObject.spec.ephemeralContainers\[0\] must"),
        ("request.oldObject.spec.ephemeralContainers.0.name", None, r"\[0\].name must be a string"),
    ],
)
def test_ephemeral_update_wrong_types_are_bad_reviews(path: str, value: Any, message: str) -> None:
    review = ephemeral_review(old_ephemeral={"first": "busybox:1"})
    with pytest.raises(BadReview, match=message):
        parse_review(_set(review, path, value))


# --- properties ---------------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-~/.", min_size=1, max_size=12)
images = st.text(min_size=1, max_size=40)
container_maps = st.dictionaries(names, images, max_size=4)
annotation_maps = st.none() | st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=3)


@settings(max_examples=400)
@given(container_maps, container_maps, container_maps, annotation_maps, container_maps)
def test_mutation_converges_and_records_the_images(
    containers: dict[str, str],
    init: dict[str, str],
    ephemeral: dict[str, str],
    annotations: dict[str, str] | None,
    changed: dict[str, str],
) -> None:
    review = pod_review(
        containers=containers or {"app": "x"},
        init_containers=init,
        ephemeral_containers=ephemeral,
        annotations=annotations,
    )
    patched = patched_object(review)
    recorded = json.loads(patched["metadata"]["annotations"][ANNOTATION])
    expected = {
        "containers": containers or {"app": "x"},
        "initContainers": init,
        "ephemeralContainers": ephemeral,
    }
    assert recorded == {k: v for k, v in expected.items() if v}
    # other annotations survive
    for key, value in (annotations or {}).items():
        if key != ANNOTATION:
            assert patched["metadata"]["annotations"][key] == value
    # a second call on its own output is a no-op
    again = copy.deepcopy(review)
    again["request"]["object"] = patched
    assert "patch" not in mutate(again)["response"]
    # a reinvocation after another webhook changed images reflects the new images
    if changed:
        patched["spec"]["containers"] = [{"name": n, "image": i} for n, i in changed.items()]
        again["request"]["object"] = patched
        final = patched_object(again)
        assert json.loads(final["metadata"]["annotations"][ANNOTATION]).get("containers") == changed
