"""The contract between the webhook and the listener (pulltag/contract.py): the opt-out rule, and that the
webhook's half (its WebhookConfigurations' selectors and its decisions) and the listener's half agree on
it; the annotation's encoding; fieldPaths; the controller owner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from listener.confirm import Confirmed
from listener.plan import Skip, TagPlan, plan
from pulltag.config import RegistrySettings, Settings
from pulltag.contract import (
    ANNOTATION,
    CONTAINER_KINDS,
    IGNORE_LABEL,
    MAX_ANNOTATION_LENGTH,
    OPT_OUT_VALUES,
    controller_owner,
    decode_images,
    encode_images,
    field_path,
    opted_out,
    parse_field_path,
)
from tests.harness.webhook import pod_review
from tests.unit.listener.factories import DIGEST, make_pull
from webhook.review import decide_mutate, decide_validate, parse_review

WEBHOOK_CONFIGURATIONS = Path(__file__).resolve().parents[3] / "manifests/base/app/webhookconfigurations.yaml"

# --- the opt-out rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "out"),
    [
        ({IGNORE_LABEL: "true"}, True),
        ({IGNORE_LABEL: "true", "app": "web"}, True),
        # Label values are case-sensitive and the selectors match exact values: nothing else opts out.
        ({IGNORE_LABEL: "True"}, False),
        ({IGNORE_LABEL: "TRUE"}, False),
        ({IGNORE_LABEL: " true"}, False),
        ({IGNORE_LABEL: "true "}, False),
        ({IGNORE_LABEL: "yes"}, False),
        ({IGNORE_LABEL: "1"}, False),
        ({IGNORE_LABEL: "false"}, False),
        ({IGNORE_LABEL: ""}, False),
        ({"pulltag.dev/Ignore": "true"}, False),  # keys are case-sensitive too
        ({"app": "true"}, False),
        ({}, False),
        (None, False),
        ({IGNORE_LABEL: True}, False),  # not a string: not a label value Kubernetes would store
        ({IGNORE_LABEL: ["true"]}, False),
    ],
)
def test_the_opt_out_rule(labels: dict[str, Any] | None, out: bool) -> None:
    assert opted_out(labels) is out


def _selectors() -> list[tuple[str, str, dict[str, Any]]]:
    """(configuration, selector field, selector) of both WebhookConfigurations, as shipped."""
    found = []
    for document in yaml.safe_load_all(WEBHOOK_CONFIGURATIONS.read_text(encoding="utf-8")):
        for webhook in document["webhooks"]:
            for field in ("namespaceSelector", "objectSelector"):
                found.append((document["kind"], field, webhook[field]))
    return found


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector's answer (only the operators the configurations use are understood)."""
    assert set(selector) == {"matchExpressions"}, selector
    for expression in selector["matchExpressions"]:
        assert expression["operator"] == "NotIn", expression
        if labels.get(expression["key"]) in expression["values"]:
            return False
    return True


def test_the_webhook_selectors_exclude_exactly_the_opt_out_values() -> None:
    selectors = _selectors()
    assert {(kind, field) for kind, field, _ in selectors} == {
        (kind, field)
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for field in ("namespaceSelector", "objectSelector")
    }
    for _, _, selector in selectors:
        on_label = [e for e in selector["matchExpressions"] if e["key"] == IGNORE_LABEL]
        assert [(e["operator"], tuple(e["values"])) for e in on_label] == [("NotIn", OPT_OUT_VALUES)]


def _webhook_handles_pod(labels: dict[str, str]) -> bool:
    """The webhook's half for a pod: the API server calls it (objectSelector), /mutate annotates and
    /validate records. It must be all or nothing."""
    selected = [_selects(s, labels) for kind, field, s in _selectors() if field == "objectSelector"]
    review = parse_review(pod_review(labels=labels))
    annotated = decide_mutate(review).outcome == "patched"
    recorded = decide_validate(review, lambda host: True, 1.0).outcome == "recorded"
    assert len(set(selected)) == 1 and selected[0] == annotated == recorded, (selected, annotated, recorded)
    return recorded


def _webhook_handles_namespace(labels: dict[str, str]) -> bool:
    """The webhook's half for a namespace: its namespaceSelectors (the API server applies them)."""
    labels = {"kubernetes.io/metadata.name": "shop", **labels}
    selected = {_selects(s, labels) for _, field, s in _selectors() if field == "namespaceSelector"}
    assert len(selected) == 1, selected
    return selected.pop()


def _listener_tags(
    pod_labels: dict[str, str] | None = None, namespace_labels: dict[str, str] | None = None
) -> bool:
    """The listener's half: plan() tags the confirmed pull, or skips it for the label."""
    pull = make_pull(image="harbor.example.com/shop/web:1", namespace="shop")
    confirmed = Confirmed(pull=pull, digest=DIGEST, repository="shop/web", registry="harbor.example.com")
    settings = Settings(registries=(RegistrySettings(host="harbor.example.com"),))
    result = plan(confirmed, settings, pod_labels=pod_labels, namespace_labels=namespace_labels)
    assert isinstance(result, TagPlan) or result == Skip("filtered", f"label {IGNORE_LABEL}"), result
    return isinstance(result, TagPlan)


@pytest.mark.parametrize(
    ("value", "handled"), [("true", False), ("True", True), (" true", True), ("false", True)]
)
def test_the_webhook_and_the_listener_agree_on_a_pod_label(value: str, handled: bool) -> None:
    labels = {IGNORE_LABEL: value}
    assert _webhook_handles_pod(labels) is handled
    assert _listener_tags(pod_labels=labels) is handled


@pytest.mark.parametrize(
    ("value", "handled"), [("true", False), ("True", True), (" true", True), ("false", True)]
)
def test_the_webhook_and_the_listener_agree_on_a_namespace_label(value: str, handled: bool) -> None:
    labels = {IGNORE_LABEL: value}
    assert _webhook_handles_namespace(labels) is handled
    assert _listener_tags(namespace_labels=labels) is handled


@given(st.text(max_size=8) | st.sampled_from(["true", "True", "TRUE", " true", "true\n", "false"]))
def test_both_halves_agree_on_any_value(value: str) -> None:
    labels = {IGNORE_LABEL: value}
    assert _webhook_handles_pod(labels) is _listener_tags(pod_labels=labels) is not opted_out(labels)
    assert _webhook_handles_namespace(labels) is _listener_tags(namespace_labels=labels)


# --- the annotation ------------------------------------------------------------------------------------


def test_the_annotation_is_compact_sorted_and_omits_empty_kinds() -> None:
    value = encode_images(
        {"initContainers": {"b": "x", "a": "y"}, "containers": {"z": "n"}, "ephemeralContainers": {}}
    )
    assert value == '{"containers":{"z":"n"},"initContainers":{"a":"y","b":"x"}}'
    assert ANNOTATION == "pulltag.dev/images"


NAMES = st.text(min_size=1, max_size=12)
IMAGES = st.dictionaries(st.sampled_from(CONTAINER_KINDS), st.dictionaries(NAMES, NAMES, max_size=3))


@given(IMAGES)
def test_the_annotation_round_trips(images: dict[str, dict[str, str]]) -> None:
    present = {kind: names for kind, names in images.items() if names}
    assert decode_images(encode_images(images)) == (present or None)


@pytest.mark.parametrize(
    "text",
    [
        None,
        7,
        "",
        "not json",
        "[]",
        "{}",
        '{"containers":[]}',
        '{"containers":{"app":7}}',
        '{"containers":{"":"nginx"}}',
        '{"containers":{"app":""}}',
        '{"future":{"app":"nginx"}}',
        '{"containers":{"app":"' + "a" * MAX_ANNOTATION_LENGTH + '"}}',
        "[" * 100_000,
    ],
)
def test_a_malformed_annotation_decodes_to_none(text: object) -> None:
    assert decode_images(text) is None


def test_unknown_kinds_in_the_annotation_are_ignored() -> None:
    assert decode_images('{"containers":{"app":"nginx"},"future":[1]}') == {"containers": {"app": "nginx"}}


# --- fieldPath -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spec.containers{app}", ("containers", "app")),
        ("spec.initContainers{init-db}", ("initContainers", "init-db")),
        ("spec.ephemeralContainers{debugger-xk2p}", ("ephemeralContainers", "debugger-xk2p")),
        ("spec.containers{}", None),
        ("spec.containers", None),
        ("spec.volumes{data}", None),
        ("spec.containers[0]", None),
        ("spec.containers{a}x", None),
        ("xspec.containers{a}", None),
        ("spec.containers{a{b}", None),
        (None, None),
        (7, None),
    ],
)
def test_parse_field_path(text: object, expected: tuple[str, str] | None) -> None:
    assert parse_field_path(text) == expected


@given(st.sampled_from(CONTAINER_KINDS), st.text(st.characters(blacklist_characters="{}"), min_size=1))
def test_field_paths_round_trip(kind: str, name: str) -> None:
    assert parse_field_path(field_path(kind, name)) == (kind, name)


# --- controller owner ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refs", "owner"),
    [
        ([{"kind": "ReplicaSet", "name": "rs", "controller": True}], "ReplicaSet/rs"),
        (
            [
                {"kind": "Thing", "name": "other", "controller": False},
                {"kind": "ReplicaSet", "name": "rs", "controller": True},
            ],
            "ReplicaSet/rs",
        ),
        ([{"kind": "ReplicaSet", "name": "rs"}], None),
        ([{"kind": "ReplicaSet", "name": "rs", "controller": "yes"}], None),
        ([{"kind": "", "name": "rs", "controller": True}], None),
        ([{"kind": "ReplicaSet", "name": 3, "controller": True}], None),
        ([None, "x", {"kind": "Job", "name": "j", "controller": True}], "Job/j"),
        ([], None),
        (None, None),
        ({"kind": "Job", "name": "j", "controller": True}, None),
    ],
)
def test_controller_owner(refs: object, owner: str | None) -> None:
    assert controller_owner(refs) == owner
