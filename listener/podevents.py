"""The Kubernetes Events the listener posts on a pod (`ImageTagged`, `ImageTagFailed`), shaped as the
kubelet's own: the pod as involvedObject, the container's fieldPath, the component that reports it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from listener.kube import Obj
from listener.plan import TagPlan

COMPONENT = "pulltag-listener"


def pod_event(
    plan_: TagPlan, pod_uid: str, field_path: str, kind: str, reason: str, message: str, instance: str
) -> Obj:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: Obj = {"apiVersion": "v1", "kind": "Pod", "namespace": plan_.namespace, "name": plan_.pod}
    if pod_uid:
        involved["uid"] = pod_uid
    if field_path:
        involved["fieldPath"] = field_path
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # The kubelet's naming: object name, a dot, a unique hex suffix.
        "metadata": {"name": f"{plan_.pod}.{time.time_ns():x}", "namespace": plan_.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": kind,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
    }
