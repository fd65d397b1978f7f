"""What the chart adds on top of the kustomize manifests by design, removed so that the rest can be compared
object by object (the drift test): Helm's bookkeeping labels and annotations, and what each install method
makes differently (the webhook certificate and the store password: the chart generates them, kustomize
takes them from certs/generate.sh and from you)."""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

HELM_LABELS = (
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)
HELM_ANNOTATIONS = ("checksum/config", "helm.sh/resource-policy")
# Made by the chart; by certs/generate.sh or by the user for kustomize (compared by their own tests).
GENERATED = {("Secret", "pulltag-webhook-tls"), ("Secret", "pulltag-store-password")}


def _clean_meta(meta: Obj) -> None:
    labels = meta.get("labels") or {}
    for key in HELM_LABELS:
        labels.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in HELM_ANNOTATIONS:
        annotations.pop(key, None)
    if "annotations" in meta and not annotations:
        del meta["annotations"]


def normalize(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    _clean_meta(out["metadata"])
    template = out.get("spec", {}).get("template") if isinstance(out.get("spec"), dict) else None
    if template is not None:
        _clean_meta(template["metadata"])
    for webhook in out.get("webhooks", []):
        webhook["clientConfig"].pop("caBundle", None)
    return out


def comparable(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {
        (o["kind"], o["metadata"]["name"]): normalize(o)
        for o in objects
        if (o["kind"], o["metadata"]["name"]) not in GENERATED
    }
