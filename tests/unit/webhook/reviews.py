"""AdmissionReviews for `kubectl debug`: an UPDATE of the pods/ephemeralcontainers subresource."""

from __future__ import annotations

from typing import Any

from tests.harness.webhook import pod_review


def ephemeral_review(
    *,
    old_ephemeral: dict[str, str] | None = None,
    added: dict[str, str] | None = None,
    **pod: Any,
) -> dict[str, Any]:
    """The review kube-apiserver sends when ephemeral containers are added to a running pod.

    `object` is the whole pod with every ephemeral container (`old_ephemeral` plus `added`), `oldObject`
    the pod before, with `old_ephemeral` only; `pod` takes the other arguments of `pod_review` (the pod's
    name, uid, containers, labels, owner, node ..., and the review's uid, apiVersion and dryRun).
    """
    old = dict(old_ephemeral or {})
    new = {**old, **(added if added is not None else {"debugger": "busybox:1.36"})}
    review = pod_review(operation="UPDATE", ephemeral_containers=new, **pod)
    before = pod_review(ephemeral_containers=old, **pod)["request"]["object"]
    request = review["request"]
    request["subResource"] = "ephemeralcontainers"
    request["requestSubResource"] = "ephemeralcontainers"
    request["oldObject"] = before
    request["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
    request["userInfo"] = {"username": "jane", "groups": ["system:authenticated"]}
    return review
