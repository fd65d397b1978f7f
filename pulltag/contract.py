"""The contract between the webhook and the listener: the names and shapes both sides read and write.

- The annotation `pulltag.dev/images`: the mutating webhook writes the pod's images into it
  (`encode_images`), the listener reads them back from it when the store has no record (`decode_images`).
- The opt-out label `pulltag.dev/ignore` and its one rule (`opted_out`): exactly the value `"true"`.
  Label values are case-sensitive in Kubernetes, and the WebhookConfigurations' namespace and object
  selectors (manifests/base/app/webhookconfigurations.yaml) match exact values: `NotIn ["true"]`. A rule
  that also took `"True"` would disagree with them, so both webhooks, the listener and the selectors
  take `OPT_OUT_VALUES` and nothing else (tests/unit/pulltag/test_contract.py holds them together).
- The container kinds, as a pod spec, an Event's fieldPath and the annotation name them, and where the
  kubelet reports each kind's status.
- An Event's fieldPath for a container (`spec.containers{app}`): `field_path` and `parse_field_path`.
- A pod's controller owner as the records keep it (`Kind/name`): `controller_owner`.

Pure and dependency-free: `webhook/` and `listener/` both import it, and it imports neither.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ANNOTATION",
    "CONTAINER_KINDS",
    "IGNORE_LABEL",
    "MAX_ANNOTATION_LENGTH",
    "OPT_OUT_VALUES",
    "STATUS_FIELDS",
    "controller_owner",
    "decode_images",
    "encode_images",
    "field_path",
    "opted_out",
    "parse_field_path",
]

ANNOTATION = "pulltag.dev/images"
IGNORE_LABEL = "pulltag.dev/ignore"
# The label values that opt a pod or namespace out, compared exactly (no case folding, no trimming).
OPT_OUT_VALUES: tuple[str, ...] = ("true",)

# Container kinds as a pod spec, an Event's fieldPath and the annotation name them.
CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")
# Where the kubelet reports each kind of container's status.
STATUS_FIELDS: Mapping[str, str] = {
    "containers": "containerStatuses",
    "initContainers": "initContainerStatuses",
    "ephemeralContainers": "ephemeralContainerStatuses",
}
# The annotation is small; a huge one is not ours and is not worth decoding.
MAX_ANNOTATION_LENGTH = 256 * 1024

# fieldPath as the kubelet writes it (kubecontainer.GenerateContainerRef → fieldpath "spec.containers{x}").
_FIELD_PATH_RE = re.compile(rf"spec\.(?P<kind>{'|'.join(CONTAINER_KINDS)})\{{(?P<name>[^{{}}]+)\}}")


def opted_out(labels: Mapping[str, object] | None) -> bool:
    """Whether a pod's or a namespace's labels opt it out of pulltag."""
    return (labels or {}).get(IGNORE_LABEL) in OPT_OUT_VALUES


def encode_images(images: Mapping[str, Mapping[str, str]]) -> str:
    """The annotation's value: compact JSON with sorted keys; kinds without containers are omitted."""
    present = {kind: dict(names) for kind, names in images.items() if names}
    return json.dumps(present, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_images(text: object) -> dict[str, dict[str, str]] | None:
    """kind → container name → image from the annotation's value; None if absent, empty or malformed in
    any way (the annotation can be written by anyone who can edit the pod). Never raises."""
    if not isinstance(text, str) or len(text) > MAX_ANNOTATION_LENGTH:
        return None
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(decoded, dict):
        return None
    images: dict[str, dict[str, str]] = {}
    for kind in CONTAINER_KINDS:
        # Unknown keys are ignored (a newer webhook may add some); a known key must be well formed.
        if kind not in decoded:
            continue
        containers = decoded[kind]
        if not isinstance(containers, dict):
            return None
        if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in containers.items()):
            return None
        images[kind] = dict(containers)
    return images or None


def field_path(kind: str, name: str) -> str:
    """The fieldPath of a container in an Event's involvedObject, as the kubelet writes it."""
    return f"spec.{kind}{{{name}}}"


def parse_field_path(text: object) -> tuple[str, str] | None:
    """(kind, container name) from a container's fieldPath; None for anything else."""
    match = _FIELD_PATH_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    return match["kind"], match["name"]


def controller_owner(refs: object) -> str | None:
    """`Kind/name` of the first ownerReference with `controller: true`, a kind and a name; None if there
    is none (or `refs` is not a list of references)."""
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if not isinstance(ref, Mapping):
            continue
        kind, name = ref.get("kind"), ref.get("name")
        if ref.get("controller") is True and _nonempty_str(kind) and _nonempty_str(name):
            return f"{kind}/{name}"
    return None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""
