"""The resource types the fake serves, and their per-type rules.

Objects are stored in one canonical form per *store* ("namespaces", "pods", "events", "leases", "secrets",
"endpointslices", and the two webhook configuration kinds).
core/v1 Events and events.k8s.io/v1 Events share the "events" store exactly as in kube-apiserver
(one etcd prefix, two API versions); the canonical form is core/v1 and events.k8s.io/v1 is a view.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    resource: str  # plural, as in the URL
    kind: str
    namespaced: bool
    store: str  # canonical storage bucket
    list_kind: str
    subresources: tuple[str, ...] = ()
    # kube-apiserver strategies: may PUT create the object? may PUT omit resourceVersion?
    allow_create_on_update: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """The qualified resource as apierrors prints it: "pods", "leases.coordination.k8s.io"."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


NAMESPACES = ResourceType(
    "", "v1", "namespaces", "Namespace", False, "namespaces", "NamespaceList", ("status",)
)
PODS = ResourceType("", "v1", "pods", "Pod", True, "pods", "PodList", ("status", "ephemeralcontainers"))
EVENTS = ResourceType("", "v1", "events", "Event", True, "events", "EventList", (), True)
EVENTS_V1 = ResourceType("events.k8s.io", "v1", "events", "Event", True, "events", "EventList", (), True)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, "leases", "LeaseList", (), True)
SECRETS = ResourceType("", "v1", "secrets", "Secret", True, "secrets", "SecretList")
ENDPOINT_SLICES = ResourceType(
    "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, "endpointslices", "EndpointSliceList"
)
# Stored like any object; every write is also handed to the admission chain (registry.Registry), so a
# client that updates a configuration's caBundle changes what the next admission call verifies against.
MUTATING_WEBHOOK_CONFIGURATIONS = ResourceType(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfigurationList",
)
VALIDATING_WEBHOOK_CONFIGURATIONS = ResourceType(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfigurationList",
)
WEBHOOK_CONFIGURATIONS = (MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    EVENTS,
    EVENTS_V1,
    LEASES,
    SECRETS,
    ENDPOINT_SLICES,
    *WEBHOOK_CONFIGURATIONS,
)
CANONICAL: dict[str, ResourceType] = {
    "namespaces": NAMESPACES,
    "pods": PODS,
    "events": EVENTS,
    "leases": LEASES,
    "secrets": SECRETS,
    "endpointslices": ENDPOINT_SLICES,
    **{rt.store: rt for rt in WEBHOOK_CONFIGURATIONS},
}
# What a namespace's deletion removes with it (the namespace controller's job).
NAMESPACED_STORES = ("pods", "events", "leases", "secrets", "endpointslices")


def lookup(group: str, version: str, resource: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version, rt.resource) == (group, version, resource):
            return rt
    return None


def by_name(name: str) -> ResourceType:
    """Resolve "pods", "events", "events.events.k8s.io", "leases", "leases.coordination.k8s.io"..."""
    for rt in RESOURCE_TYPES:
        if name == rt.group_resource:
            return rt
    for rt in RESOURCE_TYPES:
        if name == rt.resource:
            return rt
    raise KeyError(f"unknown resource {name!r}")


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if rt.api_version == api_version and rt.kind == kind:
            return rt
    return None


# --- events.k8s.io/v1 <-> core/v1 field mapping (pkg/apis/events/v1 conversion) -----------------

_EVENTS_V1_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_CORE_TO_EVENTS_V1 = {v: k for k, v in _EVENTS_V1_TO_CORE.items()}


def to_storage(rt: ResourceType, obj: Obj) -> Obj:
    """Convert an object received for ``rt`` into the canonical stored form."""
    out = copy.deepcopy(obj)
    if rt is EVENTS_V1:
        out = {_EVENTS_V1_TO_CORE.get(k, k): v for k, v in out.items()}
        out["apiVersion"], out["kind"] = EVENTS.api_version, EVENTS.kind
    else:
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
    return out


def to_view(rt: ResourceType, obj: Obj) -> Obj:
    """Render a stored object as the API version ``rt`` asks for."""
    out = copy.deepcopy(obj)
    if rt is EVENTS_V1:
        out = {_CORE_TO_EVENTS_V1.get(k, k): v for k, v in out.items()}
    out["apiVersion"], out["kind"] = rt.api_version, rt.kind
    return out


# --- field selectors -------------------------------------------------------------------------------


def _get(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


# The field labels kube-apiserver registers per type (GetAttrs / AddFieldLabelConversionFunc).
_FIELDS: dict[str, dict[str, Callable[[Obj], str]]] = {
    "namespaces": {"status.phase": lambda o: _get(o, "status.phase")},
    "pods": {
        f: (lambda p: lambda o: _get(o, p))(f)
        for f in (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        )
    },
    "events": {
        **{
            f"involvedObject.{k}": (lambda p: lambda o: _get(o, p))(f"involvedObject.{k}")
            for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
        },
        "reason": lambda o: _get(o, "reason"),
        "reportingComponent": lambda o: _get(o, "reportingComponent"),
        "source": lambda o: _get(o, "source.component"),
        "type": lambda o: _get(o, "type"),
    },
    "leases": {},
    "secrets": {"type": lambda o: _get(o, "type")},
}


def field_label(rt: ResourceType, label: str) -> Callable[[Obj], str]:
    """The accessor for a field selector label, or 400 "field label not supported" like the real server."""
    if rt is EVENTS_V1:
        # events.k8s.io/v1 accepts its own names for the same fields.
        if label.startswith("regarding."):
            label = "involvedObject." + label[len("regarding.") :]
        label = {"reportingController": "reportingComponent", "deprecatedSource": "source"}.get(label, label)
    if label == "metadata.name":
        return lambda o: _get(o, "metadata.name")
    if label == "metadata.namespace":
        return lambda o: _get(o, "metadata.namespace")
    fn = _FIELDS.get(rt.store, {}).get(label)
    if fn is None:
        raise errors.bad_request(f"field label not supported: {label}")
    return fn


# --- defaulting and validation ---------------------------------------------------------------------

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _image_pull_policy(image: str) -> str:
    # Defaulting rule from pkg/apis/core/v1/defaults.go: ":latest" or no tag -> Always.
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _qos_class(pod: Obj) -> str:
    containers = list(pod.get("spec", {}).get("containers") or []) + list(
        pod.get("spec", {}).get("initContainers") or []
    )
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """The few API defaults that clients of this project can observe (done at decode time, so before
    admission webhooks see the object, as in kube-apiserver)."""
    if rt.store == "pods":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("securityContext", {})
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for c in spec.get(key) or []:
                if isinstance(c, dict) and isinstance(c.get("image"), str):
                    c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
                    c.setdefault("terminationMessagePath", "/dev/termination-log")
                    c.setdefault("terminationMessagePolicy", "File")
                    c.setdefault("resources", {})
    elif rt.store == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif rt.store == "secrets":
        # stringData is write-only: merged into data (base64) and dropped, as the API server does.
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj.setdefault("type", "Opaque")


def prepare_for_create(rt: ResourceType, obj: Obj) -> None:
    """Strategy.PrepareForCreate: reset what a client may not set on create."""
    if rt.store == "pods":
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
    elif rt.store == "namespaces":
        obj["status"] = {"phase": "Active"}
        # kube-apiserver always stamps this label (NamespaceDefaultLabelName feature, GA 1.22).
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
            "metadata"
        ]["name"]


def prepare_for_update(rt: ResourceType, new: Obj, old: Obj, subresource: str) -> None:
    """Strategy.PrepareForUpdate: the main resource cannot change status, the status subresource
    can change nothing but status (metav1.ResetObjectMetaForStatus), the ephemeralcontainers subresource
    nothing but ``spec.ephemeralContainers``."""
    if subresource == "ephemeralcontainers":
        _keep_only_ephemeral_containers(new, old)
        return
    if "status" not in rt.subresources:
        return
    if subresource == "status":
        status = new.get("status")
        new.clear()
        new.update(copy.deepcopy(old))
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
    else:
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
    if rt.store == "namespaces":
        new.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = old[
            "metadata"
        ]["name"]


def _keep_only_ephemeral_containers(new: Obj, old: Obj) -> None:
    """podEphemeralContainersStrategy's dropNonEphemeralContainerUpdates: the old pod with the new
    ``spec.ephemeralContainers``; everything else in the body (labels, annotations, containers, status)
    is dropped without an error."""
    containers = (new.get("spec") or {}).get("ephemeralContainers")
    new.clear()
    new.update(copy.deepcopy(old))
    spec = new.setdefault("spec", {})
    if containers:
        spec["ephemeralContainers"] = containers
    else:
        spec.pop("ephemeralContainers", None)


def validate_update(rt: ResourceType, new: Obj, old: Obj, subresource: str) -> None:
    """Strategy.ValidateUpdate, for what this fake checks beyond ``validate``: the ephemeralcontainers
    subresource may only add ephemeral containers (ValidatePodEphemeralContainersUpdate)."""
    if rt.store != "pods" or subresource != "ephemeralcontainers":
        return
    spec = new.get("spec") or {}
    causes = _ephemeral_container_causes(spec)
    if not causes:
        causes = _changed_ephemeral_container_causes(spec, old.get("spec") or {})
    if causes:
        raise errors.invalid(rt.kind, (new.get("metadata") or {}).get("name") or "", causes)


def _ephemeral_container_causes(spec: Obj) -> list[tuple[str, str, str]]:
    """validateEphemeralContainers: a name and an image each, names unique across every container of
    the pod, and a targetContainerName that names a container."""
    causes: list[tuple[str, str, str]] = []
    regular = [c.get("name") for k in ("containers", "initContainers") for c in spec.get(k) or []]
    seen = set(regular)
    for i, c in enumerate(spec.get("ephemeralContainers") or []):
        path = f"spec.ephemeralContainers[{i}]"
        if not isinstance(c, dict):
            causes.append((path, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        name = c.get("name")
        if not name:
            causes.append((f"{path}.name", "FieldValueRequired", "Required value"))
        elif name in seen:
            causes.append((f"{path}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not c.get("image"):
            causes.append((f"{path}.image", "FieldValueRequired", "Required value"))
        target = c.get("targetContainerName")
        if target and target not in regular:
            causes.append((f"{path}.targetContainerName", "FieldValueNotFound", f'Not found: "{target}"'))
    return causes


def _changed_ephemeral_container_causes(spec: Obj, old_spec: Obj) -> list[tuple[str, str, str]]:
    """Existing ephemeral containers may be neither removed nor changed (matched by name: a patch does
    not keep the order)."""
    new_by_name = {c.get("name"): c for c in spec.get("ephemeralContainers") or []}
    causes: list[tuple[str, str, str]] = []
    for c in old_spec.get("ephemeralContainers") or []:
        name = c.get("name")
        if name not in new_by_name:
            message = f'Forbidden: existing ephemeral containers "{name}" may not be removed'
            causes.append(("spec.ephemeralContainers", "FieldValueForbidden", message))
        elif new_by_name[name] != c:
            message = f'Forbidden: existing ephemeral containers "{name}" may not be changed'
            causes.append((f"spec.ephemeralContainers[{name}]", "FieldValueForbidden", message))
    return causes


def validate(rt: ResourceType, obj: Obj) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[tuple[str, str, str]] = []
    pattern, what = (
        (_DNS1123_LABEL, "a lowercase RFC 1123 label")
        if rt.store == "namespaces"
        else (_DNS1123_SUBDOMAIN, "a lowercase RFC 1123 subdomain")
    )
    if not pattern.match(name) or len(name) > 253:
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": {what} must consist of lower case alphanumeric characters, '
                "'-' or '.', and must start and end with an alphanumeric character",
            )
        )
    if rt.store == "pods":
        containers = (obj.get("spec") or {}).get("containers")
        if not containers:
            causes.append(("spec.containers", "FieldValueRequired", "Required value"))
        for i, c in enumerate(containers or []):
            if not isinstance(c, dict) or not c.get("name"):
                causes.append((f"spec.containers[{i}].name", "FieldValueRequired", "Required value"))
            if not isinstance(c, dict) or not c.get("image"):
                causes.append((f"spec.containers[{i}].image", "FieldValueRequired", "Required value"))
    if rt.store == "events" and rt is not EVENTS_V1:
        inv = obj.get("involvedObject") or {}
        ns = meta.get("namespace") or ""
        if inv.get("namespace") and inv.get("namespace") != ns:
            causes.append(
                (
                    "involvedObject.namespace",
                    "FieldValueInvalid",
                    f'Invalid value: "{inv.get("namespace")}": does not match event.namespace',
                )
            )
    if causes:
        raise errors.invalid(rt.kind, name, causes)
