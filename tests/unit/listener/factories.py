"""Builders for raw Events, pods and pulls shaped as the API server serves them (JSON-decoded)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from listener.pulls import Pull

POD_UID = "6f1c7c2e-0b1a-4c8e-9d7e-1a2b3c4d5e6f"
EVENT_UID = "b3d1e9a0-5c6f-4a7b-8e9d-0f1e2d3c4b5a"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
PULLED_AT = datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC)


def core_event(
    message: str = 'Successfully pulled image "nginx:1.25" in 1.234s', **changes: Any
) -> dict[str, Any]:
    """A core/v1 Event as a 1.25+ kubelet posts it; `changes` replace top-level keys (None deletes)."""
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": "web-0.17a2b3c4d5e6f7a8",
            "namespace": "prod",
            "uid": EVENT_UID,
            "resourceVersion": "12345",
            "creationTimestamp": "2026-11-26T10:15:00Z",
        },
        "involvedObject": {
            "kind": "Pod",
            "namespace": "prod",
            "name": "web-0",
            "uid": POD_UID,
            "apiVersion": "v1",
            "resourceVersion": "999",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "Pulled",
        "message": message,
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2026-11-26T10:14:00Z",
        "lastTimestamp": "2026-11-26T10:15:02Z",
        "count": 1,
        "type": "Normal",
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
    }
    return _apply(event, changes)


def events_v1_event(
    note: str = 'Successfully pulled image "nginx:1.25" in 1.234s', **changes: Any
) -> dict[str, Any]:
    """The same pull as an events.k8s.io/v1 Event."""
    event: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web-0.17a2b3c4d5e6f7a8", "namespace": "prod", "uid": EVENT_UID},
        "eventTime": "2026-11-26T10:15:02.123456Z",
        "reportingController": "kubelet",
        "reportingInstance": "node-2",
        "action": "Pulled",
        "reason": "Pulled",
        "regarding": {
            "kind": "Pod",
            "namespace": "prod",
            "name": "web-0",
            "uid": POD_UID,
            "apiVersion": "v1",
            "fieldPath": "spec.initContainers{init}",
        },
        "note": note,
        "type": "Normal",
    }
    return _apply(event, changes)


def _apply(event: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def with_object(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `event` with keys of its involvedObject changed (None deletes)."""
    event = copy.deepcopy(event)
    _apply(event["involvedObject"], changes)
    return event


def make_pull(**changes: Any) -> Pull:
    values: dict[str, Any] = {
        "event_uid": EVENT_UID,
        "event_count": 1,
        "namespace": "prod",
        "pod_name": "web-0",
        "pod_uid": POD_UID,
        "container_kind": "containers",
        "container": "app",
        "image": "nginx:1.25",
        "already_present": False,
        "pulled_at": PULLED_AT,
        "node": "node-1",
        "pull_seconds": 1.234,
    }
    values.update(changes)
    return Pull(**values)


def make_pod(
    *,
    uid: str = POD_UID,
    images: dict[str, dict[str, str]] | None = None,
    statuses: dict[str, list[dict[str, Any]]] | None = None,
    annotation: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod named prod/web-0 with the annotation the mutating webhook writes and the given statuses."""
    if images is None:
        images = {"containers": {"app": "nginx:1.25"}}
    if annotation is None:
        annotation = json.dumps(images)
    if statuses is None:
        statuses = {
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "docker.io/library/nginx:1.25",
                    "imageID": f"docker.io/library/nginx@{DIGEST}",
                }
            ]
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "prod",
            "uid": uid,
            "creationTimestamp": "2026-11-26T10:14:00Z",
            "labels": labels or {},
            "annotations": {"pulltag.dev/images": annotation},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "web",
                    "uid": "x",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx:1.25"}]},
        "status": statuses,
    }
