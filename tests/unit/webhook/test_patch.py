from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.patch import (
    PatchError,
    apply_patch,
    decode_patch,
    encode_patch,
    escape_pointer_token,
    pointer,
    unescape_pointer_token,
)


@pytest.mark.parametrize(
    ("token", "escaped"),
    [
        ("pulltag.dev/images", "pulltag.dev~1images"),
        ("a~b", "a~0b"),
        ("~1", "~01"),  # a literal "~1" must not come back as "/"
        ("/~", "~1~0"),
        ("", ""),
    ],
)
def test_pointer_escaping(token: str, escaped: str) -> None:
    assert escape_pointer_token(token) == escaped
    assert unescape_pointer_token(escaped) == token


@given(st.text())
def test_escaping_round_trips(token: str) -> None:
    escaped = escape_pointer_token(token)
    assert "/" not in escaped
    assert unescape_pointer_token(escaped) == token


@given(st.text(), st.text())
def test_an_add_through_an_escaped_pointer_sets_exactly_that_key(key: str, value: str) -> None:
    doc = {"metadata": {"annotations": {"other": "1"}}}
    result = apply_patch(
        doc, [{"op": "add", "path": pointer("metadata", "annotations", key), "value": value}]
    )
    assert result["metadata"]["annotations"][key] == value
    assert doc == {"metadata": {"annotations": {"other": "1"}}}  # the input is not modified


def test_encoding_is_base64_of_compact_json() -> None:
    ops = [{"op": "add", "path": "/a", "value": "é"}]
    encoded = encode_patch(ops)
    assert json.loads(base64.b64decode(encoded)) == ops
    assert decode_patch(encoded) == ops
    assert b" " not in base64.b64decode(encoded)


@pytest.mark.parametrize(
    "op",
    [
        {"op": "replace", "path": "/missing", "value": 1},
        {"op": "remove", "path": "/missing"},
        {"op": "add", "path": "/a/b/c", "value": 1},
        {"op": "move", "path": "/a", "from": "/b"},
        {"op": "add", "path": "no-slash", "value": 1},
    ],
)
def test_apply_refuses_what_the_api_server_would_refuse(op: dict[str, object]) -> None:
    with pytest.raises(PatchError):
        apply_patch({"a": {}}, [op])


def test_apply_on_lists() -> None:
    doc = {"l": [1, 2]}
    assert apply_patch(doc, [{"op": "add", "path": "/l/-", "value": 3}]) == {"l": [1, 2, 3]}
    assert apply_patch(doc, [{"op": "add", "path": "/l/0", "value": 0}]) == {"l": [0, 1, 2]}
    assert apply_patch(doc, [{"op": "replace", "path": "/l/1", "value": 9}]) == {"l": [1, 9]}
    assert apply_patch(doc, [{"op": "remove", "path": "/l/0"}]) == {"l": [2]}
    with pytest.raises(PatchError):
        apply_patch(doc, [{"op": "replace", "path": "/l/2", "value": 9}])
