"""The generic registry: create/get/list/update/patch/delete with kube-apiserver's rules.

Shared by the HTTP front end and the in-process API of ``FakeKubeAPI`` (which the simulated kubelet
and tests use), so both paths bump the global resourceVersion and notify watchers the same way.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import datetime
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from . import errors
from .admission import AdmissionChain, AdmissionRequest
from .patch import apply_patch
from .rbac import User
from .resources import (
    CANONICAL,
    NAMESPACED_STORES,
    NAMESPACES,
    WEBHOOK_CONFIGURATIONS,
    Obj,
    ResourceType,
    apply_defaults,
    prepare_for_create,
    prepare_for_update,
    to_storage,
    to_view,
    validate,
    validate_update,
)
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .store import Key, Store, TooOld

# names.SimpleNameGenerator: generateName + 5 characters from this alphabet (no vowels, no 0/1/3).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

EXPIRED_CONTINUE_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a "
    "new list without the continue parameter, or use the continue token in this response to retrieve "
    "the remainder of the results. Continuing with the provided token results in an inconsistent list "
    "- objects that were created, modified, or deleted between the time the first chunk was returned "
    "and now may show up in the list."
)

SYSTEM_ADMIN = User("system:admin", ("system:masters", "system:authenticated"))


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_continue(rv: int, start_key: str) -> str:
    # Same shape as storage/etcd3's continueToken: base64url(JSON{v, rv, start}).
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start_key + "\x00"}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("unknown version")
        start = str(data["start"])
        return int(data["rv"]), start[:-1] if start.endswith("\x00") else start
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise errors.bad_request(f"continue key is not valid: {e}") from e


def _rel_key(key: Key) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


class Registry:
    def __init__(self, store: Store, admission: AdmissionChain) -> None:
        self.store = store
        self.admission = admission
        self._rand = random.Random()

    @staticmethod
    def key(rt: ResourceType, namespace: str, name: str) -> Key:
        return (rt.store, namespace if rt.namespaced else "", name)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.store.get(("namespaces", "", namespace))
        return dict(((ns or {}).get("metadata") or {}).get("labels") or {})

    def _require_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and not self.store.exists(("namespaces", "", namespace)):
            raise errors.not_found("namespaces", namespace)

    @staticmethod
    def _check_namespace(rt: ResourceType, meta: Obj, namespace: str) -> None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace

    # -- create -----------------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Obj,
        user: User = SYSTEM_ADMIN,
        dry_run: bool = False,
        admit: bool = True,
    ) -> tuple[Obj, list[str]]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request is not a JSON object")
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        self._check_namespace(rt, meta, namespace)
        for server_set in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "selfLink"):
            meta.pop(server_set, None)
        self._require_namespace(rt, namespace)
        apply_defaults(rt, obj)
        if not meta.get("name") and not meta.get("generateName"):
            raise errors.invalid(
                rt.kind,
                "",
                [("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")],
            )
        warnings: list[str] = []
        ns_labels = self.namespace_labels(namespace) if rt.namespaced else {}
        if admit:
            mutated = self.admission.mutate(
                AdmissionRequest(
                    rt,
                    "CREATE",
                    namespace if rt.namespaced else "",
                    meta.get("name", ""),
                    obj,
                    None,
                    user,
                    dry_run,
                    ns_labels,
                ),
                warnings,
            )
            obj = mutated or obj
            meta = obj.setdefault("metadata", {})
            self._check_namespace(rt, meta, namespace)
        # rest.BeforeCreate: name generation and uid happen after mutating admission.
        if not meta.get("name"):
            meta["name"] = self._generate_name(rt, namespace, meta.get("generateName", ""))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        prepare_for_create(rt, obj)
        storage = to_storage(rt, obj)
        validate(rt, storage)
        if admit:
            self.admission.validate(
                AdmissionRequest(
                    rt,
                    "CREATE",
                    namespace if rt.namespaced else "",
                    meta["name"],
                    to_view(rt, storage),
                    None,
                    user,
                    dry_run,
                    ns_labels,
                ),
                warnings,
            )
        key = self.key(rt, namespace, meta["name"])
        if dry_run:
            if self.store.exists(key):
                raise errors.already_exists(rt.group_resource, meta["name"])
            return to_view(rt, storage), warnings
        with self.store.cond:
            if self.store.exists(key):
                raise errors.already_exists(rt.group_resource, meta["name"])
            self._require_namespace(rt, namespace)
            stored = self.store.write(key, storage)
            self._sync_admission(rt, stored)
        return to_view(rt, stored), warnings

    def _generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        # Try a few times like the apiserver's RetryGenerateName; collisions are astronomically rare.
        for _ in range(8):
            name = prefix + "".join(self._rand.choice(NAME_ALPHABET) for _ in range(5))
            if not self.store.exists(self.key(rt, namespace, name)):
                return name
        return name

    # -- read -------------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(self.key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.group_resource, name)
        return to_view(rt, obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> Obj:
        lsel = parse_label_selector(label_selector)
        fsel = parse_field_selector(rt, field_selector)
        start = ""
        at_rv: int | None = None
        if continue_token:
            token_rv, start = decode_continue(continue_token)
            at_rv = token_rv if token_rv > 0 else None  # rv -1: "inconsistent" token, list from now
        elif resource_version and resource_version_match == "Exact":
            try:
                at_rv = int(resource_version)
            except ValueError as e:
                raise errors.bad_request(f"invalid resource version: {resource_version}") from e
        with self.store.cond:
            current = self.store.rv
            try:
                items = self.store.items(rt.store, namespace if rt.namespaced else None, at_rv)
            except TooOld as e:
                if continue_token:
                    raise errors.gone(
                        EXPIRED_CONTINUE_MESSAGE,
                        list_meta={"continue": encode_continue(-1, start)},
                    ) from e
                raise errors.gone(f"too old resource version: {e.requested} ({e.compacted})") from e
        list_rv = at_rv if at_rv is not None else current
        matched = [
            (k, o)
            for k, o in items
            if (not start or _rel_key(k) > start)
            and labels_match(lsel, (o.get("metadata") or {}).get("labels"))
            and fields_match(fsel, o)
        ]
        meta: Obj = {"resourceVersion": str(list_rv)}
        # resourceVersion="0" is served from the watch cache, which ignores limit (pre-1.31 semantics).
        paginate = limit > 0 and not (resource_version == "0" and not continue_token)
        if paginate and len(matched) > limit:
            page = matched[:limit]
            meta["continue"] = encode_continue(list_rv, _rel_key(page[-1][0]))
            if not lsel and not fsel:
                meta["remainingItemCount"] = len(matched) - limit
            matched = page
        out_items = []
        for _, o in matched:
            view = to_view(rt, o)
            # Typed lists omit kind/apiVersion on items, like the real server.
            view.pop("kind", None)
            view.pop("apiVersion", None)
            out_items.append(view)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": out_items}

    # -- update / patch ---------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Obj,
        subresource: str = "",
        user: User = SYSTEM_ADMIN,
        dry_run: bool = False,
        admit: bool = True,
    ) -> tuple[Obj, builtins.list[str]]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request is not a JSON object")
        body_meta = body.get("metadata") or {}
        if body_meta.get("name") and body_meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({body_meta['name']}) does not match the name on the URL ({name})"
            )
        precondition = body_meta.get("resourceVersion") or None
        if self.store.get(self.key(rt, namespace, name)) is None:
            if rt.allow_create_on_update and not subresource:
                body = copy.deepcopy(body)
                body.setdefault("metadata", {})["name"] = name
                return self.create(rt, namespace, body, user, dry_run, admit)
            raise errors.not_found(rt.group_resource, name)
        return self._update(
            rt,
            namespace,
            name,
            lambda _old: copy.deepcopy(body),
            precondition,
            subresource,
            user,
            dry_run,
            admit,
        )

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        subresource: str = "",
        user: User = SYSTEM_ADMIN,
        dry_run: bool = False,
        admit: bool = True,
    ) -> tuple[Obj, builtins.list[str]]:
        def compute(old: Obj) -> Obj:
            return apply_patch(rt.store, content_type, old, body)

        return self._update(rt, namespace, name, compute, None, subresource, user, dry_run, admit)

    def _update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        compute: Callable[[Obj], Obj],
        precondition: str | None,
        subresource: str,
        user: User,
        dry_run: bool,
        admit: bool,
    ) -> tuple[Obj, builtins.list[str]]:
        key = self.key(rt, namespace, name)
        # Optimistic concurrency like GuaranteedUpdate: compute outside the lock (webhooks may be slow),
        # commit only if nobody wrote in between, else recompute.
        for _ in range(20):
            stored_old = self.store.get(key)
            if stored_old is None:
                raise errors.not_found(rt.group_resource, name)
            old_rv = stored_old["metadata"]["resourceVersion"]
            old = to_view(rt, stored_old)
            new = compute(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise errors.bad_request("the body of the request is not a JSON object")
            new_meta = new.setdefault("metadata", {})
            wanted_rv = precondition or (
                new_meta.get("resourceVersion") if new_meta.get("resourceVersion") != old_rv else None
            )
            if wanted_rv and wanted_rv != old_rv:
                raise errors.conflict(rt.group_resource, name)
            if new_meta.get("name", name) != name:
                raise errors.bad_request(
                    f"the name of the object ({new_meta['name']}) does not match the name on the URL ({name})"
                )
            new_meta["name"] = name
            self._check_namespace(rt, new_meta, namespace)
            # Immutable metadata keeps the stored values.
            for k in ("uid", "creationTimestamp", "generateName"):
                if k in old["metadata"]:
                    new_meta[k] = old["metadata"][k]
                else:
                    new_meta.pop(k, None)
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            apply_defaults(rt, new)
            warnings: builtins.list[str] = []
            if subresource == "ephemeralcontainers":
                # Its own order of strategy and admission, see there.
                new = self._update_ephemeral_containers(
                    rt, namespace, name, new, old, user, dry_run, admit, warnings
                )
            else:
                prepare_for_update(rt, new, old, subresource)
            if admit and not subresource:
                ns_labels = self.namespace_labels(namespace) if rt.namespaced else {}
                req = AdmissionRequest(
                    rt, "UPDATE", namespace if rt.namespaced else "", name, new, old, user, dry_run, ns_labels
                )
                new = self.admission.mutate(req, warnings) or new
                req.obj = new
                self.admission.validate(req, warnings)
            storage = to_storage(rt, new)
            validate(rt, storage)
            if dry_run:
                return to_view(rt, storage), warnings
            with self.store.cond:
                current = self.store.get(key)
                if current is None:
                    raise errors.not_found(rt.group_resource, name)
                if current["metadata"]["resourceVersion"] != old_rv:
                    if precondition:
                        raise errors.conflict(rt.group_resource, name)
                    continue  # someone else wrote: recompute on the fresh object
                # A no-op update does not write (no new resourceVersion, no watch event).
                a = {**storage, "metadata": {**storage["metadata"], "resourceVersion": old_rv}}
                if a == current:
                    return to_view(rt, current), warnings
                stored = self.store.write(key, storage)
                self._sync_admission(rt, stored)
            return to_view(rt, stored), warnings
        raise errors.conflict(rt.group_resource, name, "too many concurrent updates")

    def _update_ephemeral_containers(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        new: Obj,
        old: Obj,
        user: User,
        dry_run: bool,
        admit: bool,
        warnings: builtins.list[str],
    ) -> Obj:
        """An UPDATE of pods/ephemeralcontainers in kube-apiserver's order: mutating webhooks see the
        object as sent (or as patched), then the strategy keeps only its ``spec.ephemeralContainers``
        (so a webhook's other changes are dropped) and validates the update (append-only), and only then
        validating webhooks see the resulting whole pod. Returns that pod."""
        if not admit:
            prepare_for_update(rt, new, old, "ephemeralcontainers")
            validate_update(rt, new, old, "ephemeralcontainers")
            return new
        req = AdmissionRequest(
            rt,
            "UPDATE",
            namespace,
            name,
            new,
            old,
            user,
            dry_run,
            self.namespace_labels(namespace),
            "ephemeralcontainers",
        )
        new = self.admission.mutate(req, warnings) or new
        prepare_for_update(rt, new, old, "ephemeralcontainers")
        validate_update(rt, new, old, "ephemeralcontainers")
        req.obj = new
        self.admission.validate(req, warnings)
        return new

    def _sync_admission(self, rt: ResourceType, stored: Obj) -> None:
        """A written webhook configuration is what the admission chain calls from now on (kube-apiserver's
        configuration manager, without its short delay); called under the store's lock, so the chain
        sees the writes in the store's order."""
        if rt in WEBHOOK_CONFIGURATIONS:
            self.admission.load(to_view(rt, stored))

    # -- delete -----------------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: Obj | None = None, dry_run: bool = False
    ) -> Obj:
        """Delete now (no graceful deletion or finalizers); returns what kube-apiserver returns:
        the object for pods and namespaces, a Success Status for the others."""
        key = self.key(rt, namespace, name)
        pre = (options or {}).get("preconditions") or {}
        with self.store.cond:
            current = self.store.get(key)
            if current is None:
                raise errors.not_found(rt.group_resource, name)
            meta = current["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(
                    rt.group_resource,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(
                    rt.group_resource,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            if dry_run:
                gone = current
            else:
                if rt is NAMESPACES:
                    # The namespace controller's job, done at once: delete everything inside first.
                    for store_name in NAMESPACED_STORES:
                        for k in self.store.keys(store_name):
                            if k[1] == name:
                                self.store.delete(k)
                gone = self.store.delete(key) or current
                if rt in WEBHOOK_CONFIGURATIONS:
                    self.admission.remove(rt.kind, name)
        if rt.store in ("pods", "namespaces"):
            view = to_view(rt, gone)
            if rt is NAMESPACES:
                view["status"] = {"phase": "Terminating"}
            return view
        details: dict[str, Any] = {"name": name, "kind": rt.resource, "uid": meta.get("uid")}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> Obj:
        listed = self.list(rt, namespace, label_selector, field_selector)
        for item in listed["items"]:
            m = item["metadata"]
            try:
                self.delete(rt, m.get("namespace", ""), m["name"])
            except errors.ApiError as e:
                if e.code != 404:
                    raise
        return listed

    def expire_events(self, ttl: float, now: float) -> int:
        """Delete events whose last write is older than ``ttl`` seconds (etcd lease expiry)."""
        with self.store.cond:
            doomed = [k for k, t in self.store.written_at.items() if k[0] == "events" and now - t >= ttl]
            for k in doomed:
                self.store.delete(k)
        return len(doomed)


__all__ = ["CANONICAL", "SYSTEM_ADMIN", "Registry"]
