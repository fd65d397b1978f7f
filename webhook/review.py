"""Pure admission decisions over AdmissionReview dicts: no I/O, no clock, no Flask.

`parse_review` checks the envelope and, for a request it handles, every field the decisions read, raising
`BadReview` (→ HTTP 400) with a message naming the field. `decide_mutate` and `decide_validate` return
the response to send plus what the view has to do (the record to write) and an outcome for the metrics.

Two requests on core/v1 `pods` are handled (see `Target`); every other request is allowed untouched:
- `CREATE` (no subresource): /mutate annotates, /validate records.
- `UPDATE` of the `ephemeralcontainers` subresource (`kubectl debug`): ephemeral containers can never be
  given at CREATE, the API server adds them to a running pod this way. /validate writes the record again
  from the updated pod (the whole pod, so the record stays complete); /mutate does not patch.
The opt-out label (`pulltag.contract.opted_out`: `pulltag.dev/ignore: "true"`, exactly) on the pod turns
both webhooks into no-ops; the same label on a namespace is handled by the WebhookConfigurations'
namespaceSelector, which the API server applies before calling us.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulltag.contract import ANNOTATION, CONTAINER_KINDS, controller_owner, encode_images, opted_out
from pulltag.images import InvalidReference, parse_reference
from pulltag.store.base import AdmissionRecord
from webhook.patch import Operation, encode_patch, pointer

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# Warnings longer than this are truncated by some clients; the API server caps them too.
MAX_WARNING_LENGTH = 119

# A lookup that says whether an image registry host is configured (Settings.registry_for, as a bool).
RegistryKnown = Callable[[str], bool]


class BadReview(ValueError):
    """The body is JSON but not a usable AdmissionReview; the message says what is wrong."""


@dataclass(frozen=True)
class Pod:
    """The parts of a pod the webhooks read, already type-checked."""

    name: str | None
    generate_name: str | None
    namespace: str | None
    uid: str | None
    labels: dict[str, str]
    annotations: dict[str, str] | None  # None: the pod has no annotations map at all
    has_metadata: bool
    images: dict[str, dict[str, str]]
    owner: str | None
    node: str | None

    @property
    def ignored(self) -> bool:
        return opted_out(self.labels)


class Target(enum.Enum):
    """The requests pulltag acts on; anything else is allowed untouched."""

    POD_CREATE = "CREATE"
    EPHEMERAL_CONTAINERS = "UPDATE of pods/ephemeralcontainers"


# (operation, subResource) of a core/v1 pods request -> what it is.
_TARGETS = {("CREATE", ""): Target.POD_CREATE, ("UPDATE", "ephemeralcontainers"): Target.EPHEMERAL_CONTAINERS}


@dataclass(frozen=True)
class Review:
    api_version: str
    uid: str
    request: Mapping[str, Any]
    dry_run: bool
    target: Target | None  # None means "allow untouched"
    pod: Pod | None  # the request's object; set exactly when target is
    # Names of the ephemeral containers the pod already had (oldObject), for an ephemeralcontainers UPDATE.
    old_ephemeral: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    response: dict[str, Any]
    outcome: str
    record: AdmissionRecord | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Parsing with type checks: every accessor names the JSON path it complains about.


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _opt(mapping: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    """`mapping[key]` if present and not null, else None; raises BadReview if of another type."""
    value = mapping.get(key)
    if value is None:
        return None
    # bool is an int subclass; no field we read is numeric, so a plain isinstance is enough here.
    if not isinstance(value, kind):
        expected = _type_name(kind())
        raise BadReview(f"{path}.{key} must be {_article(expected)}, got {_type_name(value)}")
    return value


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _str_map(mapping: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
    value: dict[str, Any] | None = _opt(mapping, key, dict, path)
    if value is None:
        return None
    for k, v in value.items():
        if not isinstance(v, str):
            raise BadReview(f"{path}.{key}[{_clip(k, 60)!r}] must be a string, got {_type_name(v)}")
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_review(body: object) -> Review:
    """Check an AdmissionReview (v1 or v1beta1) and extract what the decisions need."""
    if not isinstance(body, dict):
        raise BadReview(f"the body must be a JSON object (an AdmissionReview), got {_type_name(body)}")
    api_version = body.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise BadReview(f"apiVersion must be one of {', '.join(API_VERSIONS)}")
    if body.get("kind") != "AdmissionReview":
        raise BadReview("kind must be AdmissionReview")
    request = body.get("request")
    if request is None:
        raise BadReview("request is missing")
    if not isinstance(request, dict):
        raise BadReview(f"request must be an object, got {_type_name(request)}")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid must be a non-empty string")
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise BadReview(f"request.dryRun must be a boolean, got {_type_name(dry_run)}")
    target = _target_of(request)
    if target is None:
        return Review(str(api_version), uid, request, bool(dry_run), None, None)
    pod = _pod_of(request, target)
    old_ephemeral = _old_ephemeral_names(request) if target is Target.EPHEMERAL_CONTAINERS else frozenset()
    return Review(str(api_version), uid, request, bool(dry_run), target, pod, old_ephemeral)


def _target_of(request: Mapping[str, Any]) -> Target | None:
    resource: dict[str, Any] | None = _opt(request, "resource", dict, "request")
    operation = _opt(request, "operation", str, "request")
    sub_resource = _opt(request, "subResource", str, "request") or ""
    # Operation and subresource first: the resource's fields are only type-checked for requests we handle.
    target = _TARGETS.get((operation or "", sub_resource))
    if resource is None or target is None:
        return None
    group = _opt(resource, "group", str, "request.resource") or ""
    version = _opt(resource, "version", str, "request.resource")
    name = _opt(resource, "resource", str, "request.resource")
    return target if (group, version, name) == ("", "v1", "pods") else None


def _old_ephemeral_names(request: Mapping[str, Any]) -> frozenset[str]:
    """The ephemeral containers of oldObject; an absent oldObject counts as a pod without any."""
    old: dict[str, Any] | None = _opt(request, "oldObject", dict, "request")
    spec: dict[str, Any] = _opt(old or {}, "spec", dict, "request.oldObject") or {}
    _images_of(spec, "request.oldObject.spec")  # type-checks every container and its name
    return frozenset(container["name"] for container in spec.get("ephemeralContainers") or [])


def _pod_of(request: Mapping[str, Any], target: Target) -> Pod:
    obj: dict[str, Any] | None = _opt(request, "object", dict, "request")
    if obj is None:
        raise BadReview(f"request.object is required for a pod {target.value}")
    metadata: dict[str, Any] | None = _opt(obj, "metadata", dict, "request.object")
    spec: dict[str, Any] = _opt(obj, "spec", dict, "request.object") or {}
    meta = metadata or {}
    where = "request.object.metadata"
    return Pod(
        name=_opt(meta, "name", str, where) or _opt(request, "name", str, "request"),
        generate_name=_opt(meta, "generateName", str, where),
        namespace=_opt(meta, "namespace", str, where) or _opt(request, "namespace", str, "request"),
        uid=_opt(meta, "uid", str, where),
        labels=_str_map(meta, "labels", where) or {},
        annotations=_str_map(meta, "annotations", where),
        has_metadata=metadata is not None,
        images=_images_of(spec, "request.object.spec"),
        owner=_controller_of(meta),
        node=_opt(spec, "nodeName", str, "request.object.spec") or None,
    )


def _images_of(spec: Mapping[str, Any], path: str) -> dict[str, dict[str, str]]:
    """kind → container name → image; containers without an image (the API server will reject the
    pod in validation) are left out rather than refused, so mutation never blocks on them."""
    images: dict[str, dict[str, str]] = {}
    for kind in CONTAINER_KINDS:
        containers: list[Any] = _opt(spec, kind, list, path) or []
        for index, container in enumerate(containers):
            where = f"{path}.{kind}[{index}]"
            if not isinstance(container, dict):
                raise BadReview(f"{where} must be an object, got {_type_name(container)}")
            name = _opt(container, "name", str, where)
            image = _opt(container, "image", str, where)
            if name is None:
                raise BadReview(f"{where}.name must be a string")
            if image is not None:
                images.setdefault(kind, {})[name] = image
    return images


def _controller_of(meta: Mapping[str, Any]) -> str | None:
    """The controller owner (`pulltag.contract.controller_owner`); each reference is type-checked up to
    the first controller one."""
    refs: list[Any] = _opt(meta, "ownerReferences", list, "request.object.metadata") or []
    for index, ref in enumerate(refs):
        where = f"request.object.metadata.ownerReferences[{index}]"
        if not isinstance(ref, dict):
            raise BadReview(f"{where} must be an object, got {_type_name(ref)}")
        for key, expected in (("controller", bool), ("kind", str), ("name", str)):
            _opt(ref, key, expected, where)
        owner = controller_owner([ref])
        if owner is not None:
            return owner
    return None


# --------------------------------------------------------------------------------------------------
# Responses and decisions.


def response(
    review: Review,
    *,
    patch: list[Operation] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """An allowing AdmissionReview response in the request's own apiVersion."""
    answer: dict[str, Any] = {"uid": review.uid, "allowed": True}
    if patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = encode_patch(patch)
    if warnings:
        answer["warnings"] = warnings
    return {"apiVersion": review.api_version, "kind": "AdmissionReview", "response": answer}


def annotation_patch(pod: Pod) -> list[Operation]:
    """The operations that make the annotation equal to the pod's current images (empty if it is)."""
    value = encode_images(pod.images)
    if not pod.has_metadata:
        return [{"op": "add", "path": "/metadata", "value": {"annotations": {ANNOTATION: value}}}]
    if pod.annotations is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: value}}]
    current = pod.annotations.get(ANNOTATION)
    if current == value:
        return []
    op = "add" if current is None else "replace"
    return [{"op": op, "path": pointer("metadata", "annotations", ANNOTATION), "value": value}]


def decide_mutate(review: Review) -> Decision:
    pod = review.pod
    if pod is None:
        return Decision(response(review), "skipped")
    if review.target is Target.EPHEMERAL_CONTAINERS:
        # Never patch here: the ephemeralcontainers subresource keeps only spec.ephemeralContainers of the
        # object, so an annotation patch would be dropped (or get the request refused). The annotation thus
        # lists only what was admitted at CREATE, and ephemeral containers depend on the store record that
        # /validate writes: the listener falls back to the annotation only when the store has no record.
        return Decision(response(review), "ephemeral_unpatched")
    if pod.ignored:
        return Decision(response(review), "ignored")
    patch = annotation_patch(pod)
    return Decision(response(review, patch=patch), "patched" if patch else "unchanged")


def decide_validate(review: Review, registry_known: RegistryKnown, now: float) -> Decision:
    """Never denies. The record is None when nothing may be written (dry run, ignored, no uid).

    The record is always built from the whole pod in the request, for an ephemeralcontainers UPDATE too
    (the API server sends the complete pod there), so writing it over the CREATE record loses nothing."""
    pod = review.pod
    if pod is None:
        return Decision(response(review), "skipped")
    if pod.ignored:
        return Decision(response(review), "ignored")
    warnings = image_warnings(_images_to_warn_about(review, pod), registry_known)
    reply = response(review, warnings=warnings)
    if review.dry_run:
        return Decision(reply, "dry_run", warnings=warnings)
    if not pod.uid or not pod.name or not pod.namespace:
        # Without the pod's own uid (set by the API server before validation) nothing can be joined later.
        return Decision(reply, "incomplete", warnings=warnings)
    record = AdmissionRecord(
        uid=pod.uid,
        namespace=pod.namespace,
        name=pod.name,
        images={kind: dict(names) for kind, names in pod.images.items() if names},
        owner=pod.owner,
        node=pod.node,
        admitted_at=now,
    )
    return Decision(reply, "recorded", record=record, warnings=warnings)


def _images_to_warn_about(review: Review, pod: Pod) -> dict[str, dict[str, str]]:
    """The images this request brings in: all of them at CREATE, only the ephemeral containers added by
    an ephemeralcontainers UPDATE (`kubectl debug` should not repeat warnings the pod got at CREATE)."""
    if review.target is not Target.EPHEMERAL_CONTAINERS:
        return pod.images
    ephemeral = pod.images.get("ephemeralContainers", {})
    return {"ephemeralContainers": {n: i for n, i in ephemeral.items() if n not in review.old_ephemeral}}


def image_warnings(images: Mapping[str, Mapping[str, str]], registry_known: RegistryKnown) -> list[str]:
    """One short warning per distinct image that will not be tagged, in container order."""
    warnings: list[str] = []
    seen: set[str] = set()
    for kind in CONTAINER_KINDS:
        for image in images.get(kind, {}).values():
            if image in seen:
                continue
            seen.add(image)
            warning = _warning_for(image, registry_known)
            if warning is not None:
                warnings.append(warning)
    return warnings


def _warning_for(image: str, registry_known: RegistryKnown) -> str | None:
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return _short("pulltag: invalid image reference {}, will not be tagged", image)
    if registry_known(ref.registry):
        return None
    return _short(
        f"pulltag: registry {_clip(ref.registry, 40)} not configured, {{}} will not be tagged", image
    )


def _short(template: str, image: str) -> str:
    """Fill `template` with the image, clipped so the warning stays under MAX_WARNING_LENGTH."""
    room = MAX_WARNING_LENGTH - len(template.format(""))
    # repr-like quoting would escape control characters; keep only printable ones so the line stays one line.
    printable = "".join(c if c.isprintable() else "?" for c in image)
    return template.format(_clip(printable, max(room, 8)))[:MAX_WARNING_LENGTH]
