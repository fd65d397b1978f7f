"""Strategies for bodies a client might send: broken JSON, wrong types, deep nesting, huge strings,
unicode, missing keys, and valid reviews with one field replaced by something else."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.harness.webhook import DIGEST, pod_review
from tests.unit.webhook.reviews import ephemeral_review

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

_create_reviews = st.builds(
    pod_review,
    api_version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
    containers=st.dictionaries(
        st.text(max_size=8), st.text(max_size=30) | st.just(f"nginx@{DIGEST}"), max_size=3
    ),
    init_containers=st.dictionaries(st.text(max_size=8), st.text(max_size=30), max_size=2),
    labels=st.none() | st.dictionaries(st.text(max_size=8), st.sampled_from(["true", "x"]), max_size=2),
    annotations=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    dry_run=st.booleans(),
    name=st.none() | st.text(max_size=20),
    pod_uid=st.none() | st.text(max_size=20),
)
# kubectl debug: the same pods, reviewed as an UPDATE of pods/ephemeralcontainers with an oldObject.
_ephemeral_reviews = st.builds(
    ephemeral_review,
    api_version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
    old_ephemeral=st.dictionaries(st.text(max_size=8), st.text(max_size=30), max_size=2),
    added=st.dictionaries(
        st.text(max_size=8), st.text(max_size=30) | st.just(f"busybox@{DIGEST}"), max_size=2
    ),
    labels=st.none() | st.dictionaries(st.text(max_size=8), st.sampled_from(["true", "x"]), max_size=2),
    dry_run=st.booleans(),
    pod_uid=st.none() | st.text(max_size=20),
)
_base_reviews = st.one_of(_create_reviews, _ephemeral_reviews)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_reviews(draw: st.DrawFn) -> Any:
    """A valid review with one value anywhere in it replaced (or its key deleted)."""
    review = copy.deepcopy(draw(_base_reviews))
    paths = _paths(review)
    path = draw(st.sampled_from(paths))
    parent: Any = review
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return review


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=200_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"request":', b"}")]))
    closed = draw(st.booleans())
    return opener * depth + b"1" + (closer * depth if closed else b"")


@st.composite
def huge_strings(draw: st.DrawFn) -> Any:
    review = pod_review()
    size = draw(st.integers(min_value=1000, max_value=1_000_000))
    char = draw(st.sampled_from(["x", "é", "\U0001f600", "\\", '"', "\ud800"]))
    where = draw(st.sampled_from(["image", "name", "uid", "label", "annotation"]))
    text = char * size
    obj = review["request"]["object"]
    if where == "image":
        obj["spec"]["containers"][0]["image"] = text
    elif where == "name":
        obj["spec"]["containers"][0]["name"] = text
    elif where == "uid":
        review["request"]["uid"] = text
    elif where == "label":
        obj["metadata"]["labels"] = {text: text}
    else:
        obj["metadata"]["annotations"] = {"pulltag.dev/images": text}
    return review


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    mutated_reviews().map(encode),
    json_values.map(encode),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    deep_nesting(),
    huge_strings().map(encode),
    _base_reviews.map(encode),
)


def fuzz_settings(max_examples: int) -> settings:
    """Hypothesis settings for feeding `bodies` to a webhook: no deadline (a server answers at its own
    pace), no example database, and big generated bodies are the point, not a health problem."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
