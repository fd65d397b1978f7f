"""PATCH bodies: JSON Patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

Strategic merge is implemented for the patch strategies of the fields this project's clients touch
(pod status conditions, containers, owner references, finalizers ...); everything else merges like a
JSON merge patch and lists are replaced, which is what the real server does for atomic lists
(e.g. ``status.containerStatuses`` has no patch strategy and is replaced as a whole).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from . import errors

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Path (with "*" for list items) -> merge key; None means a primitive list merged as a set.
_MERGE_KEYS: dict[str, dict[tuple[str, ...], str | None]] = {
    "pods": {
        ("metadata", "ownerReferences"): "uid",
        ("metadata", "finalizers"): None,
        ("spec", "containers"): "name",
        ("spec", "initContainers"): "name",
        ("spec", "ephemeralContainers"): "name",
        ("spec", "volumes"): "name",
        ("spec", "imagePullSecrets"): "name",
        ("spec", "containers", "*", "env"): "name",
        ("spec", "containers", "*", "ports"): "containerPort",
        ("spec", "containers", "*", "volumeMounts"): "mountPath",
        ("spec", "initContainers", "*", "env"): "name",
        ("spec", "initContainers", "*", "volumeMounts"): "mountPath",
        ("status", "conditions"): "type",
        ("status", "podIPs"): "ip",
        ("status", "hostIPs"): "ip",
    },
    "*": {
        ("metadata", "ownerReferences"): "uid",
        ("metadata", "finalizers"): None,
    },
}


def apply_patch(store: str, content_type: str, current: dict[str, Any], body: bytes) -> dict[str, Any]:
    ct = content_type.split(";", 1)[0].strip().lower()
    try:
        patch = json.loads(body or b"null")
    except ValueError as e:
        raise errors.bad_request(f"error decoding patch: {e}") from e
    if ct == JSON_PATCH:
        if not isinstance(patch, list):
            raise errors.bad_request(
                "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
            )
        return json_patch(current, patch)
    if not isinstance(patch, dict):
        raise errors.bad_request("error decoding patch: patch is not a JSON object")
    if ct == MERGE_PATCH:
        return dict(merge_patch(current, patch))
    if ct == STRATEGIC_MERGE_PATCH:
        keys = {**_MERGE_KEYS["*"], **_MERGE_KEYS.get(store, {})}
        return dict(strategic_merge(current, patch, (), keys))
    raise errors.unsupported_media_type(content_type)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(
    target: Any, patch: Any, path: tuple[str, ...], keys: dict[tuple[str, ...], str | None]
) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue  # ordering hints and retainKeys: not needed for the fields we support
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in (v or [])]
            continue
        sub = (*path, k)
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and sub in keys:
            out[k] = _merge_list(out.get(k), v, sub, keys)
        else:
            merged = strategic_merge(out.get(k), v, sub, keys)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
    return out


def _merge_list(
    current: Any, patch: list[Any], path: tuple[str, ...], keys: dict[tuple[str, ...], str | None]
) -> list[Any]:
    merge_key = keys[path]
    cur = copy.deepcopy(current) if isinstance(current, list) else []
    if merge_key is None:  # primitive list with strategy "merge": set union, order kept
        for item in patch:
            if item not in cur:
                cur.append(item)
        return cur
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [i for i in copy.deepcopy(patch) if not (isinstance(i, dict) and "$patch" in i)]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise errors.bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
        idx = next(
            (n for n, c in enumerate(cur) if isinstance(c, dict) and c.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del cur[idx]
            continue
        if idx is None:
            cur.append({k: v for k, v in copy.deepcopy(item).items() if k != "$patch"})
        else:
            cur[idx] = strategic_merge(cur[idx], item, (*path, "*"), keys)
    return cur


# --- RFC 6902 --------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.ApiError(422, "Invalid", f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _fail(msg: str) -> errors.ApiError:
    # kube-apiserver answers a JSON patch that cannot be applied with 422 and the jsonpatch error text.
    return errors.ApiError(422, "Invalid", msg)


def _resolve(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise _fail(f"doc is missing path: /{'/'.join(parts)}")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError) as e:
                raise _fail(f"doc is missing path: /{'/'.join(parts)}") from e
        else:
            raise _fail(f"doc is missing path: /{'/'.join(parts)}")
    return cur


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                i = int(last)
            except ValueError as e:
                raise _fail(f"invalid array index: {last}") from e
            if i < 0 or i > len(parent):
                raise _fail(f"add operation does not apply: doc is missing path: /{'/'.join(parts)}")
            parent.insert(i, value)
    else:
        raise _fail(f"add operation does not apply: doc is missing path: /{'/'.join(parts)}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise _fail("cannot remove the whole document")
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    try:
        if isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent, list):
            del parent[int(last)]
        else:
            raise KeyError(last)
    except (KeyError, ValueError, IndexError) as e:
        raise _fail(f"remove operation does not apply: doc is missing path: /{'/'.join(parts)}") from e
    return doc


def json_patch(current: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    doc: Any = copy.deepcopy(current)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise errors.bad_request(f"invalid JSON patch operation: {op}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _resolve(doc, parts)  # must exist
            doc = (
                _add(_remove(doc, parts), parts, copy.deepcopy(op.get("value"))) if parts else op.get("value")
            )
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_resolve(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _resolve(doc, parts) != op.get("value"):
                raise _fail(f"testing value /{'/'.join(parts)} failed: test failed")
        else:
            raise errors.bad_request(f"Unexpected kind: {kind}")
    if not isinstance(doc, dict):
        raise _fail("patched object is not a JSON object")
    return doc
