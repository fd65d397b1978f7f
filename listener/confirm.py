"""Confirmation (flow step 4): does a reported pull really count? Pure functions, no I/O.

A pull counts only when the pod was admitted, the image in the kubelet's message is the image admitted
for that container, and the pod's status (written by the kubelet, not by whoever posted the event)
carries an `imageID` naming that same repository. The digest to tag comes from that `imageID` and from
nowhere else: a tag on a guessed digest would be worse than no tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from listener.pulls import Pull, parse_timestamp
from pulltag.config import canonical_host
from pulltag.contract import ANNOTATION, STATUS_FIELDS, controller_owner, decode_images
from pulltag.images import DOCKER_HUB, ImageReference, InvalidReference, parse_image_id, parse_reference
from pulltag.store.base import AdmissionRecord

__all__ = [
    "Confirmed",
    "Pending",
    "Rejected",
    "RejectedOutcome",
    "admission_from_annotation",
    "confirm",
]

RejectedOutcome = Literal["unadmitted", "mismatch", "no_digest", "invalid"]


@dataclass(frozen=True)
class Confirmed:
    """A pull that counts: the admitted image and the exact digest that reached the node."""

    pull: Pull
    digest: str  # from the container status imageID
    repository: str  # e.g. "library/nginx"
    registry: str  # the admitted image's registry host, e.g. "docker.io"


@dataclass(frozen=True)
class Pending:
    """Not decidable yet (no imageID in the pod status): the caller retries with backoff."""

    reason: str


@dataclass(frozen=True)
class Rejected:
    """The pull does not count, for good."""

    outcome: RejectedOutcome
    reason: str


# ---------------------------------------------------------------------------------------------------
# The annotation


def admission_from_annotation(pod: Mapping[str, Any]) -> AdmissionRecord | None:
    """The admission record carried by the pod's `pulltag.dev/images` annotation; None if absent or
    malformed in any way. Never raises."""
    metadata = _mapping(_mapping(pod).get("metadata"))
    uid, namespace, name = (_str(metadata.get(key)) for key in ("uid", "namespace", "name"))
    if not (uid and namespace and name):
        return None
    images = decode_images(_mapping(metadata.get("annotations")).get(ANNOTATION))
    if images is None:
        return None
    created = parse_timestamp(metadata.get("creationTimestamp"))
    return AdmissionRecord(
        uid=uid,
        namespace=namespace,
        name=name,
        images=images,
        owner=controller_owner(metadata.get("ownerReferences")),
        node=_str(_mapping(_mapping(pod).get("spec")).get("nodeName")) or None,
        admitted_at=created.timestamp() if created is not None else 0.0,
    )


# ---------------------------------------------------------------------------------------------------
# Confirmation


def confirm(
    pull: Pull, record: AdmissionRecord | None, pod: Mapping[str, Any] | None
) -> Confirmed | Pending | Rejected:
    """Decide whether `pull` counts. `record` is the store's record, or else the annotation's; `pod` is
    the pod as currently read from the API (None if it could not be read yet)."""
    admitted = _admitted_image(pull, record)
    if not isinstance(admitted, ImageReference):
        return admitted
    if pod is None:
        return Pending("pod_unknown")
    if _str(_mapping(_mapping(pod).get("metadata")).get("uid")) != pull.pod_uid:
        # Same namespace and name, another pod: a StatefulSet replica or a recreated bare pod.
        return Rejected("mismatch", "pod_recreated")
    image_id = _status_image_id(pod, pull.container_kind, pull.container)
    if image_id is None:
        return Pending("no_image_id")
    return _confirm_digest(pull, admitted, image_id)


def _admitted_image(pull: Pull, record: AdmissionRecord | None) -> ImageReference | Rejected:
    """The admitted image of the pulled container, once the message is known to name that image."""
    if record is None:
        return Rejected("unadmitted", "no admission record")
    if record.uid != pull.pod_uid:
        return Rejected("mismatch", "pod_uid")
    admitted_text = record.image_of(pull.container_kind, pull.container)
    if admitted_text is None:
        return Rejected("mismatch", "unknown_container")
    try:
        admitted = parse_reference(admitted_text)
        pulled = parse_reference(pull.image)
    except InvalidReference as err:
        return Rejected("invalid", err.reason)
    if admitted.canonical != pulled.canonical:
        return Rejected("mismatch", "image")
    return admitted


def _status_image_id(pod: Mapping[str, Any], kind: str, container: str) -> str | None:
    """The container's status imageID, or None while the kubelet has not written one."""
    statuses = _mapping(_mapping(pod).get("status")).get(STATUS_FIELDS.get(kind, ""))
    if not isinstance(statuses, list):
        return None
    for status in statuses:
        status = _mapping(status)
        if status.get("name") == container:
            return _str(status.get("imageID")) or None
    return None


def _confirm_digest(pull: Pull, admitted: ImageReference, image_id_text: str) -> Confirmed | Rejected:
    try:
        image_id = parse_image_id(image_id_text)
    except InvalidReference as err:
        return Rejected("no_digest", f"unparsable imageID: {err.reason}")
    if image_id.registry is None or image_id.repository is None:
        # A bare local id names content on the node but no repository: nothing we could tag.
        return Rejected("no_digest", "local_image_id")
    # containerd and CRI-O report the repository as pulled, Docker as familiar; compare normalised.
    if _normal_name(image_id.registry, image_id.repository) != _normal_name(
        admitted.registry, admitted.repository
    ):
        return Rejected("no_digest", "other_repository")
    if admitted.digest is not None and admitted.digest != image_id.digest:
        # The pod asked for one digest and runs another: the status and the admission disagree.
        return Rejected("mismatch", "digest")
    return Confirmed(
        pull=pull,
        digest=image_id.digest,
        repository=admitted.repository,
        registry=admitted.registry,
    )


def _normal_name(registry: str, repository: str) -> str:
    """registry/repository with Docker Hub's host aliases folded (`registry-1.docker.io/nginx` is
    `docker.io/library/nginx`), as runtimes may report either."""
    host = canonical_host(registry)
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return f"{host}/{repository}"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
