"""JSON Patch (RFC 6902) helpers for the mutating webhook: pointer escaping, encoding, and a small
`apply_patch` used by the tests and by reinvocation checks (add / replace / remove only)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

Operation = dict[str, Any]


def escape_pointer_token(token: str) -> str:
    """One JSON Pointer reference token (RFC 6901): `~` first, else `/`→`~1` would be re-escaped."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_pointer_token(token: str) -> str:
    # The reverse order matters: "~01" is "~1" literally, not "/".
    return token.replace("~1", "/").replace("~0", "~")


def pointer(*tokens: str) -> str:
    return "".join("/" + escape_pointer_token(t) for t in tokens)


def encode_patch(operations: list[Operation]) -> str:
    """The base64 of the compact JSON patch, as AdmissionResponse.patch expects."""
    raw = json.dumps(operations, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def decode_patch(encoded: str) -> list[Operation]:
    value = json.loads(base64.b64decode(encoded, validate=True))
    if not isinstance(value, list):
        raise ValueError("a JSON patch is a list of operations")
    return value


class PatchError(ValueError):
    """The patch does not apply to the document (as the API server would refuse it)."""


def apply_patch(document: Any, operations: list[Operation]) -> Any:
    """Apply add/replace/remove operations to a copy of `document`, with RFC 6902 semantics for objects."""
    result = copy.deepcopy(document)
    for op in operations:
        result = _apply_one(result, op)
    return result


def _apply_one(document: Any, op: Operation) -> Any:
    path = op.get("path")
    kind = op.get("op")
    if not isinstance(path, str) or kind not in {"add", "replace", "remove"}:
        raise PatchError(f"unsupported operation {op!r}")
    if path == "":
        if kind == "remove":
            raise PatchError("cannot remove the whole document")
        return copy.deepcopy(op.get("value"))
    if not path.startswith("/"):
        raise PatchError(f"path {path!r} must start with '/'")
    tokens = [unescape_pointer_token(t) for t in path[1:].split("/")]
    parent = document
    for token in tokens[:-1]:
        parent = _child(parent, token, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if kind in {"replace", "remove"} and last not in parent:
            raise PatchError(f"{kind} of missing member {path!r}")
        if kind == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(op.get("value"))
        return document
    if isinstance(parent, list):
        return _apply_list(document, parent, last, kind, op, path)
    raise PatchError(f"parent of {path!r} is not a container")


def _apply_list(document: Any, parent: list[Any], last: str, kind: str, op: Operation, path: str) -> Any:
    if last == "-" and kind == "add":
        parent.append(copy.deepcopy(op.get("value")))
        return document
    if not last.isdigit():
        raise PatchError(f"bad array index in {path!r}")
    index = int(last)
    limit = len(parent) if kind == "add" else len(parent) - 1
    if index > limit:
        raise PatchError(f"array index out of range in {path!r}")
    if kind == "add":
        parent.insert(index, copy.deepcopy(op.get("value")))
    elif kind == "replace":
        parent[index] = copy.deepcopy(op.get("value"))
    else:
        del parent[index]
    return document


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise PatchError(f"missing member {token!r} in {path!r}")
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise PatchError(f"cannot walk {path!r}")
