"""Admission webhooks called the way kube-apiserver calls them (admissionregistration.k8s.io/v1).

Order for CREATE: mutating webhooks (object still has generateName and no name/uid), one reinvocation
pass for ``reinvocationPolicy: IfNeeded`` webhooks when a later webhook changed the object, then the
registry generates name and uid, then validating webhooks. UPDATE of the main resource and of
``pods/ephemeralcontainers`` is admitted too (``subResource`` set in the review, rules matched on
``resource/subresource`` as kube-apiserver's rules.Matcher does); ``pods/status`` is not. Services are
resolved through routes the test configures; TLS is verified against the webhook's caBundle with the
service DNS name as SNI. Like kube-apiserver's webhook client, connections are kept alive and reused
(one TLS handshake per connection, not per call); a reused connection the webhook has meanwhile closed
is retried once on a fresh one.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import errors
from .patch import json_patch
from .rbac import User
from .resources import Obj, ResourceType
from .selectors import selector_object_matches


@dataclass
class AdmissionRequest:
    rt: ResourceType
    operation: str  # CREATE | UPDATE | DELETE
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    user: User
    dry_run: bool
    namespace_labels: dict[str, str]
    subresource: str = ""  # e.g. "ephemeralcontainers"; "" for the resource itself


class _RoutedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host:port`` (what the URL says, used for SNI and certificate checks) while the TCP
    connection goes to a test-local address, like kube-apiserver dialing a Service's endpoint."""

    def __init__(self, host: str, port: int, dial: tuple[str, int], context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, context=context, timeout=timeout)
        self._dial = dial
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection(self._dial, self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


# Errors of a kept-alive connection that the server closed while it sat idle: safe to retry once on a
# fresh connection (the request never reached a handler). Timeouts are not among them.
_STALE = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)

_PoolKey = tuple[str, int, tuple[str, int], str]  # (host, port, dialled address, caBundle)


class _ConnectionPool:
    """Idle keep-alive connections per webhook endpoint, and one SSL context per caBundle."""

    def __init__(self, max_idle: int = 8) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_PoolKey, list[_RoutedHTTPSConnection]] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._max_idle = max_idle

    def context(self, ca_bundle: str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(ca_bundle)
            if ctx is None:
                if ca_bundle:
                    ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
                else:
                    ctx = ssl.create_default_context()
                self._contexts[ca_bundle] = ctx
            return ctx

    def take(self, key: _PoolKey) -> _RoutedHTTPSConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give_back(self, key: _PoolKey, conn: _RoutedHTTPSConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()


class AdmissionChain:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = _ConnectionPool()
        self.mutating: dict[str, Obj] = {}  # configuration name -> MutatingWebhookConfiguration
        self.validating: dict[str, Obj] = {}
        # (namespace, service name, service port or None = any port) -> the endpoints (host, port), called
        # in turn like a Service's endpoints
        self.routes: dict[tuple[str, str, int | None], list[tuple[str, int]]] = {}
        self._turn = 0
        self.calls: list[dict[str, Any]] = []  # every AdmissionReview sent, for test assertions

    # -- configuration --------------------------------------------------------------------------

    def load(self, obj: Obj) -> bool:
        kind = obj.get("kind")
        name = (obj.get("metadata") or {}).get("name", "")
        with self._lock:
            if kind == "MutatingWebhookConfiguration":
                self.mutating[name] = copy.deepcopy(obj)
            elif kind == "ValidatingWebhookConfiguration":
                self.validating[name] = copy.deepcopy(obj)
            else:
                return False
        return True

    def remove(self, kind: str, name: str) -> None:
        with self._lock:
            (self.mutating if kind.startswith("Mutating") else self.validating).pop(name, None)

    def set_ca_bundle(self, ca_pem: bytes | str, configuration: str | None = None) -> None:
        pem = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
        b64 = base64.b64encode(pem).decode()
        with self._lock:
            for confs in (self.mutating, self.validating):
                for name, conf in confs.items():
                    if configuration is None or name == configuration:
                        for wh in conf.get("webhooks") or []:
                            wh.setdefault("clientConfig", {})["caBundle"] = b64

    def route(self, namespace: str, name: str, port: int | None, host: str, target_port: int) -> None:
        self.route_endpoints(namespace, name, port, [(host, target_port)])

    def route_endpoints(
        self, namespace: str, name: str, port: int | None, endpoints: list[tuple[str, int]]
    ) -> None:
        with self._lock:
            self.routes[(namespace, name, port)] = list(endpoints)

    def _dial(self, namespace: str, name: str, port: int) -> tuple[str, int] | None:
        with self._lock:
            endpoints = self.routes.get((namespace, name, port)) or self.routes.get((namespace, name, None))
            if not endpoints:
                return None
            self._turn += 1
            return endpoints[self._turn % len(endpoints)]

    def _webhooks(self, mutating: bool) -> list[Obj]:
        with self._lock:
            confs = self.mutating if mutating else self.validating
            # kube-apiserver orders configurations by name, webhooks within one as listed.
            return [copy.deepcopy(wh) for _, c in sorted(confs.items()) for wh in c.get("webhooks") or []]

    # -- matching -------------------------------------------------------------------------------

    @staticmethod
    def _rule_matches(rule: Obj, req: AdmissionRequest) -> bool:
        def has(values: list[str] | None, v: str) -> bool:
            return bool(values) and ("*" in values or v in values)  # type: ignore[operator]

        if not has(rule.get("operations"), req.operation):
            return False
        if not has(rule.get("apiGroups"), req.rt.group) or not has(rule.get("apiVersions"), req.rt.version):
            return False
        if not any(
            _resource_matches(r, req.rt.resource, req.subresource) for r in rule.get("resources") or []
        ):
            return False
        scope = rule.get("scope") or "*"
        return not (
            (scope == "Namespaced" and not req.rt.namespaced) or (scope == "Cluster" and req.rt.namespaced)
        )

    def _applies(self, wh: Obj, req: AdmissionRequest) -> bool:
        if not any(self._rule_matches(r, req) for r in wh.get("rules") or []):
            return False
        ns_labels = (
            req.namespace_labels
            if req.rt.namespaced
            else ((req.obj or req.old or {}).get("metadata") or {}).get("labels") or {}
        )
        if not selector_object_matches(wh.get("namespaceSelector"), ns_labels):
            return False
        labels = ((req.obj or req.old or {}).get("metadata") or {}).get("labels") or {}
        return selector_object_matches(wh.get("objectSelector"), labels)

    # -- calling ----------------------------------------------------------------------------------

    def _review(self, req: AdmissionRequest, obj: Obj | None) -> Obj:
        gvk = {"group": req.rt.group, "version": req.rt.version, "kind": req.rt.kind}
        gvr = {"group": req.rt.group, "version": req.rt.version, "resource": req.rt.resource}
        options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
        options: Obj = {"kind": options_kind[req.operation], "apiVersion": "meta.k8s.io/v1"}
        if req.dry_run:
            options["dryRun"] = ["All"]
        request: Obj = {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "subResource": req.subresource,
            "requestSubResource": req.subresource,
            "name": req.name,
            "namespace": req.namespace,
            "operation": req.operation,
            "userInfo": req.user.info(),
            "object": obj,
            "oldObject": req.old,
            "dryRun": req.dry_run,
            "options": options,
        }
        for key in ("subResource", "requestSubResource", "name"):
            if not request[key]:
                del request[key]  # omitempty in the real AdmissionRequest, i.e. "empty"
        if not req.namespace:
            del request["namespace"]
        return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}

    def _post(self, wh: Obj, review: Obj) -> Obj:
        """POST the review; raises ``RuntimeError`` with the text kube-apiserver would report."""
        cc = wh.get("clientConfig") or {}
        timeout = float(wh.get("timeoutSeconds") or 10)
        ca_bundle = str(cc.get("caBundle") or "")
        if cc.get("service"):
            svc = cc["service"]
            ns, name, port = svc.get("namespace", ""), svc.get("name", ""), int(svc.get("port") or 443)
            host = f"{name}.{ns}.svc"
            path = svc.get("path") or "/"
            dial = self._dial(ns, name, port)
            url = f"https://{host}:{port}{path}"
            if dial is None:
                raise RuntimeError(f'Post "{url}?timeout={int(timeout)}s": service "{ns}/{name}" not found')
        elif cc.get("url"):
            parts = urlsplit(cc["url"])
            host, port = parts.hostname or "", parts.port or 443
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            dial = (host, port)
            url = cc["url"]
        else:
            raise RuntimeError("webhook has neither clientConfig.service nor clientConfig.url")
        sep = "&" if "?" in path else "?"
        full = f"{url}{sep}timeout={int(timeout)}s"
        key: _PoolKey = (host, port, dial, ca_bundle)
        body = json.dumps(review).encode()
        target = f"{path}{sep}timeout={int(timeout)}s"
        conn = self._pool.take(key)
        try:
            if conn is not None:
                try:
                    status, data = _exchange(conn, target, body, timeout)
                except _STALE:
                    conn.close()
                    conn = None
            if conn is None:
                conn = _RoutedHTTPSConnection(host, port, dial, self._pool.context(ca_bundle), timeout)
                status, data = _exchange(conn, target, body, timeout)
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            if isinstance(e, TimeoutError | socket.timeout):
                raise RuntimeError(f'Post "{full}": context deadline exceeded') from e
            raise RuntimeError(f'Post "{full}": {e}') from e
        self._pool.give_back(key, conn)
        if status != 200:
            raise RuntimeError(f"received invalid webhook response status code {status}")
        try:
            answer = json.loads(data)
            response = answer["response"]
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"received invalid webhook response: {e}") from e
        if response.get("uid") != review["request"]["uid"]:
            raise RuntimeError(f"expected response.uid={review['request']['uid']}, got {response.get('uid')}")
        return dict(response)

    def _call(
        self, wh: Obj, req: AdmissionRequest, obj: Obj | None, warnings: list[str], mutating: bool
    ) -> Obj | None:
        """Call one webhook; returns the patched object (mutating) or None. Raises ApiError to deny."""
        name = wh.get("name", "")
        if req.dry_run and wh.get("sideEffects") not in ("None", "NoneOnDryRun"):
            # webhookerrors.NewDryRunUnsupportedErr
            raise errors.bad_request(f'admission webhook "{name}" does not support dry run')
        review = self._review(req, obj)
        with self._lock:
            self.calls.append({"webhook": name, "review": copy.deepcopy(review)})
        try:
            response = self._post(wh, review)
        except RuntimeError as e:
            if (wh.get("failurePolicy") or "Fail") == "Ignore":
                return obj
            raise errors.internal(f'failed calling webhook "{name}": failed to call webhook: {e}') from e
        warnings.extend(str(w) for w in response.get("warnings") or [])
        if not response.get("allowed"):
            raise _denied(name, response.get("status") or {})
        if response.get("patch"):
            if not mutating:
                raise errors.internal(
                    f'failed calling webhook "{name}": validating webhook may not return a patch'
                )
            if response.get("patchType") != "JSONPatch":
                raise errors.internal(
                    f'failed calling webhook "{name}": unsupported patch type "{response.get("patchType")}"'
                )
            ops = json.loads(base64.b64decode(response["patch"]))
            try:
                return json_patch(obj or {}, ops)
            except errors.ApiError as e:
                raise errors.internal(f'failed calling webhook "{name}": {e.message}') from e
        return obj

    def mutate(self, req: AdmissionRequest, warnings: list[str]) -> Obj | None:
        obj = req.obj
        invoked: list[tuple[Obj, Obj | None]] = []  # (webhook, object right after its call)
        for wh in self._webhooks(mutating=True):
            if not self._applies(wh, req):
                continue
            obj = self._call(wh, req, obj, warnings, mutating=True)
            invoked.append((wh, copy.deepcopy(obj)))
        # Reinvocation: once, for IfNeeded webhooks whose view of the object is stale.
        for wh, seen in invoked:
            if wh.get("reinvocationPolicy") == "IfNeeded" and seen != obj:
                obj = self._call(wh, req, obj, warnings, mutating=True)
        return obj

    def validate(self, req: AdmissionRequest, warnings: list[str]) -> None:
        for wh in self._webhooks(mutating=False):
            if self._applies(wh, req):
                self._call(wh, req, req.obj, warnings, mutating=False)


def _exchange(conn: _RoutedHTTPSConnection, target: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """One POST on `conn` (connecting it if needed); the status and the whole body."""
    conn.timeout = timeout
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    conn.request(
        "POST",
        target,
        body=body,
        headers={"Content-Type": "application/json", "Accept": "application/json, */*"},
    )
    resp = conn.getresponse()
    data = resp.read()
    if resp.will_close:
        conn.close()  # the next use reconnects
    return resp.status, data


def _resource_matches(rule_resource: str, resource: str, subresource: str) -> bool:
    """rules.Matcher.resource: "pods" matches the resource only, "pods/ephemeralcontainers" that
    subresource only, "pods/*" the resource and all its subresources, "*" every resource but no
    subresource, "*/*" everything, "*/status" that subresource of anything."""
    res, _, sub = rule_resource.partition("/")
    return res in ("*", resource) and sub in ("*", subresource)


def _denied(name: str, status: Obj) -> errors.ApiError:
    # webhookerrors.ToStatusErr
    denied_by = f'admission webhook "{name}" denied the request'
    code = int(status.get("code") or 0)
    if code < 400:
        code = 400
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return errors.ApiError(code, str(status.get("reason") or ""), message, status.get("details"))


NamespaceLabels = Callable[[str], dict[str, str]]
