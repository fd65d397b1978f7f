"""``FakeKubeAPI``: the HTTPS front end, watches, faults and the in-process API for tests.

Threading model: one daemon thread per connection (``ThreadingHTTPServer``); watch streams wait on
the store's condition variable and write chunks outside the lock; a reaper thread expires events.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import os
import random
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import yaml

from . import errors
from .admission import AdmissionChain
from .certs import api_server_bundle
from .rbac import Attributes, Authenticator, RBACAuthorizer, User
from .registry import SYSTEM_ADMIN, Registry
from .resources import (
    NAMESPACES,
    RESOURCE_TYPES,
    WEBHOOK_CONFIGURATIONS,
    Obj,
    ResourceType,
    by_kind,
    by_name,
    lookup,
    to_view,
)
from .selectors import (
    fields_match,
    labels_match,
    name_from_field_selector,
    parse_field_selector,
    parse_label_selector,
)
from .store import Change, Store, TooOld


class RequestRecord(NamedTuple):
    """One served request. ``path`` includes the query string; ``route`` is the path without it."""

    method: str
    path: str
    user: str
    status: int

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}


@dataclass
class _FaultRule:
    remaining: int | None  # None = unlimited
    share: float | None  # None = every matching request
    status: int
    retry_after: int | None
    path_contains: str | None


class _WatchStream:
    """Per-stream control flags, flipped by fault injection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.closed = False  # end the stream gracefully (terminating chunk)
        self.abrupt = False  # drop the TCP connection without ending the chunked body
        self.stalled = False  # send nothing, keep the socket open


@dataclass
class _Request:
    method: str
    rt: ResourceType
    namespace: str  # "" = cluster-scoped or all namespaces
    name: str
    subresource: str
    query: dict[str, str]
    verb: str


def _warning_header(text: str) -> str:
    # RFC 7234 warn-text as net/http and client-go write it: 299 - "escaped text"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    # kube-apiserver writes the header as UTF-8 bytes; http.server encodes header strings as Latin-1,
    # so hand it the UTF-8 bytes spelled as Latin-1 characters (a client reads them back the same way).
    return f'299 - "{escaped}"'.encode("utf-8", "backslashreplace").decode("latin-1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch responses
    server_version = "fake-kube-apiserver"
    sys_version = ""
    timeout = 300  # idle keep-alive connections and blocked writes give up eventually
    server: _HTTPSServer

    # -- plumbing -----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; request_log has what tests need

    @property
    def api(self) -> FakeKubeAPI:
        return self.server.api

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send_json(
        self,
        status: int,
        body: Obj,
        user: str,
        headers: dict[str, str] | None = None,
        warnings: Iterable[str] = (),
    ) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for w in warnings:
            self.send_header("Warning", _warning_header(w))
        self.end_headers()
        self.api._record(self.command, self.path, user, status)
        self.wfile.write(data)

    def _send_error(self, err: errors.ApiError, user: str) -> None:
        self._send_json(err.code, err.status(), user, err.headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- routing ------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        user_name = ""
        try:
            body = self._read_body()
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if path in ("/healthz", "/livez", "/readyz") and method == "GET":
                self._send_plain(200, b"ok", user_name)
                return
            if path == "/version" and method == "GET":
                self._send_json(200, self.api.version_info(), user_name)
                return
            user = self.api.authn.authenticate(self.headers.get("Authorization"))
            if user is None:
                raise errors.unauthorized()
            user_name = user.name
            self.api._maybe_inject_fault(method, self.path)
            discovery = self.api._discovery(path)
            if discovery is not None:
                if method != "GET":
                    raise errors.method_not_allowed(method)
                self._send_json(200, discovery, user_name)
                return
            req = self._parse(method, path, query)
            self._authorize(user, req)
            self._serve(req, user, body)
        except errors.ApiError as e:
            self._send_error(e, user_name)
        except (OSError, ssl.SSLError):
            raise
        except Exception as e:  # a bug in the fake: answer like an apiserver panic would
            self._send_error(errors.internal(f"{type(e).__name__}: {e}"), user_name)

    def _send_plain(self, status: int, data: bytes, user: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.api._record(self.command, self.path, user, status)
        self.wfile.write(data)

    def _parse(self, method: str, path: str, query: dict[str, str]) -> _Request:
        segs = [s for s in path.split("/") if s]
        if len(segs) >= 2 and segs[0] == "api":
            group, version, rest = "", segs[1], segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise _not_found_path()
        watch_prefix = bool(rest) and rest[0] == "watch"  # legacy /api/v1/watch/... paths
        if watch_prefix:
            rest = rest[1:]
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            rt = lookup(group, version, rest[2])
            if rt is not None and rt.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest:
            raise _not_found_path()
        rt = lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise _not_found_path()
        name = rest[1] if len(rest) >= 2 else ""
        sub = rest[2] if len(rest) == 3 else ""
        if sub and sub not in rt.subresources:
            raise _not_found_path()
        is_watch = watch_prefix or query.get("watch") in ("true", "1")
        verb = {
            "GET": ("watch" if is_watch else "get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
        if verb == "watch" and name:
            # /watch/namespaces/x/pods/NAME: a watch restricted to one object
            query["fieldSelector"] = ",".join(
                filter(None, [query.get("fieldSelector"), f"metadata.name={name}"])
            )
            name = ""
        if method == "POST" and name:
            raise errors.method_not_allowed(method)
        if method in ("PUT", "PATCH") and not name:
            raise errors.method_not_allowed(method)
        return _Request(method, rt, namespace, name, sub, query, verb)

    def _authorize(self, user: User, req: _Request) -> None:
        name = req.name
        if req.verb in ("list", "watch") and not name:
            # RBAC resourceNames apply to list/watch of a single object selected by metadata.name.
            with contextlib.suppress(errors.ApiError):
                name = name_from_field_selector(parse_field_selector(req.rt, req.query.get("fieldSelector")))
        attrs = Attributes(
            user, req.verb, req.rt.group, req.rt.resource, req.subresource, req.namespace, name
        )
        if not self.api.rbac.allowed(attrs):
            raise errors.forbidden(req.rt.group_resource, req.name or None, attrs.forbidden_reason())

    # -- verbs --------------------------------------------------------------------------------

    def _serve(self, req: _Request, user: User, body: bytes) -> None:
        reg = self.api.registry
        dry_run = req.query.get("dryRun") == "All"
        ns = req.namespace
        if req.rt.namespaced and not ns and req.verb not in ("list", "watch", "deletecollection"):
            raise _not_found_path()
        if req.verb == "watch":
            self._watch(req, user)
            return
        if req.verb == "list":
            limit = _int_param(req.query, "limit")
            out = reg.list(
                req.rt,
                ns or None,
                req.query.get("labelSelector"),
                req.query.get("fieldSelector"),
                limit,
                req.query.get("continue"),
                req.query.get("resourceVersion"),
                req.query.get("resourceVersionMatch"),
            )
            self._send_json(200, out, user.name)
        elif req.verb == "get":
            self._send_json(200, reg.get(req.rt, ns, req.name), user.name)
        elif req.verb == "create":
            obj, warnings = reg.create(req.rt, ns, _json_body(body), user, dry_run)
            self._send_json(201, obj, user.name, warnings=warnings)
        elif req.verb == "update":
            obj, warnings = reg.update(req.rt, ns, req.name, _json_body(body), req.subresource, user, dry_run)
            self._send_json(200, obj, user.name, warnings=warnings)
        elif req.verb == "patch":
            ctype = self.headers.get("Content-Type") or ""
            obj, warnings = reg.patch(req.rt, ns, req.name, ctype, body, req.subresource, user, dry_run)
            self._send_json(200, obj, user.name, warnings=warnings)
        elif req.verb == "delete":
            options = _json_body(body) if body.strip() else {}
            self._send_json(200, reg.delete(req.rt, ns, req.name, options, dry_run), user.name)
        elif req.verb == "deletecollection":
            out = reg.delete_collection(
                req.rt, ns or None, req.query.get("labelSelector"), req.query.get("fieldSelector")
            )
            self._send_json(200, out, user.name)

    # -- watch --------------------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(self, etype: str, obj: Obj) -> bytes:
        return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"

    def _watch(self, req: _Request, user: User) -> None:
        api = self.api
        store = api.store
        rt = req.rt
        lsel = parse_label_selector(req.query.get("labelSelector"))
        fsel = parse_field_selector(rt, req.query.get("fieldSelector"))
        timeout = _int_param(req.query, "timeoutSeconds")
        deadline = time.monotonic() + timeout if timeout > 0 else None
        bookmarks = req.query.get("allowWatchBookmarks") in ("true", "1")
        rv_param = req.query.get("resourceVersion") or ""
        ns_filter = req.namespace or None

        def matches(obj: Obj | None) -> bool:
            return (
                obj is not None
                and labels_match(lsel, (obj.get("metadata") or {}).get("labels"))
                and fields_match(fsel, obj)
            )

        def in_scope(change: Change) -> bool:
            return change.key[0] == rt.store and (ns_filter is None or change.key[1] == ns_filter)

        initial: list[Obj] = []
        too_old: TooOld | None = None
        with store.cond:
            if rv_param in ("", "0"):
                # "Get state and start at most recent": synthetic ADDED for what exists now.
                initial = [o for _, o in store.items(rt.store, ns_filter) if matches(o)]
                pos = store.rv
            else:
                try:
                    pos = int(rv_param)
                except ValueError as e:
                    raise errors.bad_request(f"invalid resource version: {rv_param}") from e
                if pos < store.compacted_rv:
                    too_old = TooOld(pos, store.compacted_rv)

        stream = _WatchStream(self.request)
        api._register_watch(stream)
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            api._record(self.command, self.path, user.name, 200)
            if too_old is not None:
                self._write_chunk(self._event("ERROR", errors.gone(str(too_old)).status()))
                self._write_chunk(b"")
                return
            for o in initial:
                self._write_chunk(self._event("ADDED", to_view(rt, o)))
            next_bookmark = time.monotonic() + api.bookmark_interval
            while True:
                out: list[bytes] = []
                end = False
                send_bookmark = False
                expired: TooOld | None = None
                with store.cond:
                    while True:
                        now = time.monotonic()
                        if stream.closed:
                            end = True
                            break
                        if not stream.stalled:  # a stalled stream sends nothing, not even its end
                            try:
                                if store.changes_after(pos):
                                    break
                            except TooOld as e:
                                expired = e
                                break
                            if bookmarks and now >= next_bookmark:
                                send_bookmark = True
                                break
                            if deadline is not None and now >= deadline:
                                end = True
                                break
                        waits = [1.0]
                        if deadline is not None:
                            waits.append(deadline - now)
                        if bookmarks:
                            waits.append(next_bookmark - now)
                        store.cond.wait(max(0.001, min(waits)))
                    if not end and expired is None:
                        for ch in store.changes_after(pos):
                            pos = ch.rv
                            if in_scope(ch):
                                ev = _translate(ch, matches)
                                if ev is not None:
                                    out.append(self._event(ev[0], to_view(rt, ev[1])))
                        if send_bookmark:
                            # Only kind, apiVersion and resourceVersion, as the real cacher sends.
                            out.append(
                                self._event(
                                    "BOOKMARK",
                                    {
                                        "kind": rt.kind,
                                        "apiVersion": rt.api_version,
                                        "metadata": {"resourceVersion": str(pos)},
                                    },
                                )
                            )
                            next_bookmark = time.monotonic() + api.bookmark_interval
                if expired is not None:
                    # The watcher fell behind compaction: 410 in-band, like the watch cache.
                    self._write_chunk(self._event("ERROR", errors.gone(str(expired)).status()))
                    break
                for data in out:
                    self._write_chunk(data)
                if end:
                    break
            if stream.abrupt:
                raise ConnectionAbortedError("watch closed abruptly by fault injection")
            self._write_chunk(b"")  # end of the chunked body: the server ended the watch
        finally:
            api._unregister_watch(stream)


def _translate(ch: Change, matches: Any) -> tuple[str, Obj] | None:
    """A watch with a selector sees objects enter and leave the selection (cacheWatcher semantics)."""
    if ch.type == "ADDED":
        return ("ADDED", ch.obj) if matches(ch.obj) else None
    if ch.type == "DELETED":
        return ("DELETED", ch.obj) if matches(ch.prev) else None
    now, before = matches(ch.obj), matches(ch.prev)
    if now and before:
        return ("MODIFIED", ch.obj)
    if now:
        return ("ADDED", ch.obj)
    if before and ch.prev is not None:
        # The previous state, stamped with the resourceVersion of the change that made it leave.
        old = json.loads(json.dumps(ch.prev))
        old["metadata"]["resourceVersion"] = ch.obj["metadata"]["resourceVersion"]
        return ("DELETED", old)
    return None


def _int_param(query: dict[str, str], name: str) -> int:
    value = query.get(name)
    if not value:
        return 0
    try:
        return int(value)
    except ValueError as e:
        raise errors.bad_request(f"invalid {name}: {value}") from e


def _json_body(body: bytes) -> Obj:
    try:
        obj = json.loads(body or b"null")
    except ValueError as e:
        raise errors.bad_request(f"error decoding body: {e}") from e
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request is not a JSON object")
    return obj


def _not_found_path() -> errors.ApiError:
    return errors.ApiError(
        404,
        "NotFound",
        "the server could not find the requested resource",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]},
    )


class _HTTPSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], api: FakeKubeAPI, ctx: ssl.SSLContext) -> None:
        self.api = api
        self.ssl_ctx = ctx
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK add ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Handshake in the connection's thread, not the accept loop (a slow client must not block it).
        tls = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connection resets are normal in fault-injection tests

    def drop_all_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


_RESOURCE_LIST_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class FakeKubeAPI:
    """A fake kube-apiserver over HTTPS; see the package docstring for what it implements."""

    def __init__(
        self,
        event_ttl_seconds: float = 3600.0,
        compaction_window: int = 10000,
        bookmark_interval: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
    ) -> None:
        self.event_ttl_seconds = event_ttl_seconds
        self.bookmark_interval = bookmark_interval
        self.host = host
        self.port = port
        self.store = Store(compaction_window)
        self.admission = AdmissionChain()
        self.registry = Registry(self.store, self.admission)
        self.rbac = RBACAuthorizer()
        self.authn = Authenticator()
        self.admin_user = User("kubernetes-admin", ("system:masters", "system:authenticated"))
        self.admin_token = self.authn.add(self.admin_user)
        self.request_log: list[RequestRecord] = []
        self.ignored_manifests: list[Obj] = []  # kinds the fake does not serve (Deployments, Services...)
        self._rand = random.Random(seed)
        self._fault: _FaultRule | None = None
        self._fault_lock = threading.Lock()
        self._watches: set[_WatchStream] = set()
        self._watch_lock = threading.Lock()
        self._server: _HTTPSServer | None = None
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None
        self._reaper_stop = threading.Event()
        self._reaper_wake = threading.Event()
        self._tmpdir = tempfile.mkdtemp(prefix="fake-kubeapi-")
        bundle = api_server_bundle()
        self.ca_pem = bundle.ca_pem
        self.ca_file = os.path.join(self._tmpdir, "ca.crt")
        cert_file = os.path.join(self._tmpdir, "tls.crt")
        key_file = os.path.join(self._tmpdir, "tls.key")
        for path, data in (
            (self.ca_file, bundle.ca_pem),
            (cert_file, bundle.cert_pem),
            (key_file, bundle.key_pem),
        ):
            with open(path, "wb") as f:
                f.write(data)
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(cert_file, key_file)
        self._ssl.set_alpn_protocols(["http/1.1"])
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.registry.create(NAMESPACES, "", {"metadata": {"name": ns}}, admit=False)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeKubeAPI:
        if self._server is not None:
            return self
        self._server = _HTTPSServer((self.host, self.port), self, self._ssl)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-kubeapi-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._reaper_stop.clear()
        self._reaper = threading.Thread(target=self._reap_events, name="fake-kubeapi-event-ttl", daemon=True)
        self._reaper.start()
        return self

    def stop(self) -> None:
        """Stop serving (listening socket and every connection closed); state is kept for restart()."""
        server, self._server = self._server, None
        self._reaper_stop.set()
        self._reaper_wake.set()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._watch_lock:
            for w in self._watches:
                w.closed = w.abrupt = True
        with self.store.cond:
            self.store.cond.notify_all()
        server.drop_all_connections()
        if self._reaper is not None:
            self._reaper.join(timeout=2)

    def restart(self) -> None:
        """Stop and start again on the same port with the same state and tokens."""
        self.stop()
        deadline = time.monotonic() + 5
        while True:
            try:
                self.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        """stop() and remove the temporary files."""
        self.stop()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reap_events(self) -> None:
        while True:
            interval = min(1.0, max(0.01, self.event_ttl_seconds / 4))
            self._reaper_wake.wait(interval)
            self._reaper_wake.clear()
            if self._reaper_stop.is_set():
                return
            self.registry.expire_events(self.event_ttl_seconds, time.monotonic())

    def set_event_ttl(self, seconds: float) -> None:
        """Shorten (or lengthen) the event TTL; applies to existing events from their last write."""
        self.event_ttl_seconds = seconds
        self._reaper_wake.set()

    # -- credentials ----------------------------------------------------------------------------

    def add_token(self, username: str, groups: Iterable[str] = (), token: str | None = None) -> str:
        """A bearer token for an arbitrary user (``system:authenticated`` is added)."""
        gs = tuple(dict.fromkeys([*groups, "system:authenticated"]))
        return self.authn.add(User(username, gs), token)

    def add_service_account_token(self, namespace: str, name: str) -> str:
        user = User(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
            uid=f"sa-{namespace}-{name}",
        )
        return self.authn.add(user)

    def write_kubeconfig(
        self, path: str | os.PathLike[str], token: str | None = None, namespace: str = "default"
    ) -> str:
        """A kubeconfig for this server (CA inline); ``token`` None = the admin token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fake",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "fake-user", "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "fake-user", "namespace": namespace}}
            ],
            "current-context": "fake",
        }
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        return os.fspath(path)

    # -- configuration from manifests -----------------------------------------------------------

    def load_manifests(self, manifests: str | Obj | Iterable[Obj]) -> list[tuple[str, str, str]]:
        """Load YAML text (multi-document) or objects: Namespaces, RBAC, webhook configurations, pods,
        events, leases. Other kinds are kept in ``ignored_manifests``. Returns (kind, namespace, name)."""
        if isinstance(manifests, str):
            docs: list[Any] = [d for d in yaml.safe_load_all(manifests) if d]
        elif isinstance(manifests, dict):
            docs = [manifests]
        else:
            docs = list(manifests)
        flat: list[Obj] = []
        for d in docs:
            if isinstance(d, dict) and d.get("kind", "").endswith("List") and "items" in d:
                flat.extend(d["items"] or [])
            elif isinstance(d, dict):
                flat.append(d)
        flat.sort(key=lambda o: 0 if o.get("kind") == "Namespace" else 1)  # like kubectl apply ordering
        loaded: list[tuple[str, str, str]] = []
        for obj in flat:
            meta = obj.get("metadata") or {}
            ref = (obj.get("kind", ""), meta.get("namespace") or "", meta.get("name") or "")
            if self.rbac.load(obj):
                loaded.append(ref)
                continue
            rt = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if rt is None:
                self.ignored_manifests.append(obj)
                continue
            ns = (meta.get("namespace") or "default") if rt.namespaced else ""
            try:
                self.registry.create(rt, ns, obj, admit=False)
            except errors.ApiError as e:
                if e.code != 409:
                    raise
                body = json.loads(json.dumps(obj))
                body.get("metadata", {}).pop("resourceVersion", None)
                self.registry.update(rt, ns, meta["name"], body, admit=False)
            loaded.append(ref)
        return loaded

    def route_service(
        self, namespace: str, name: str, port: int, host: str = "127.0.0.1", *, target_port: int | None = None
    ) -> None:
        """Where calls to a webhook's ``clientConfig.service`` go.

        ``route_service(ns, name, 8443)``: any service port -> 127.0.0.1:8443.
        ``route_service(ns, name, 443, target_port=8443)``: service port 443 -> 127.0.0.1:8443.
        TLS still uses ``<name>.<namespace>.svc`` for SNI and certificate verification."""
        if target_port is None:
            self.admission.route(namespace, name, None, host, port)
        else:
            self.admission.route(namespace, name, port, host, target_port)

    def route_service_endpoints(
        self, namespace: str, name: str, port: int, endpoints: builtins.list[tuple[str, int]]
    ) -> None:
        """Calls to service port ``port`` go to each of ``endpoints`` in turn (a Service with several
        ready replicas); TLS as in ``route_service``."""
        self.admission.route_endpoints(namespace, name, port, endpoints)

    def set_webhook_ca_bundle(self, ca_pem: bytes | str, configuration: str | None = None) -> None:
        """Fill ``caBundle`` of the stored webhook configurations (all, or one configuration by name), as
        a client's update would: the admission chain follows the stored objects."""
        pem = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
        bundle = base64.b64encode(pem).decode()
        for rt in WEBHOOK_CONFIGURATIONS:
            for item in self.registry.list(rt, None)["items"]:
                name = item["metadata"]["name"]
                if configuration is not None and name != configuration:
                    continue
                for wh in item.get("webhooks") or []:
                    wh.setdefault("clientConfig", {})["caBundle"] = bundle
                self.registry.update(rt, "", name, item, admit=False)

    # -- in-process API (no HTTP, no auth, no faults; same registry, RV and watch notifications) --

    @staticmethod
    def _rt(resource: str) -> ResourceType:
        return by_name(resource)

    @staticmethod
    def _ns(rt: ResourceType, namespace: str | None, obj: Obj | None = None) -> str:
        if not rt.namespaced:
            return ""
        return namespace or ((obj or {}).get("metadata") or {}).get("namespace") or "default"

    def create(
        self,
        resource: str,
        obj: Obj,
        namespace: str | None = None,
        *,
        admit: bool = False,
        dry_run: bool = False,
        user: User = SYSTEM_ADMIN,
    ) -> Obj:
        """Create; ``admit=True`` runs the admission webhooks as an HTTP create would."""
        rt = self._rt(resource)
        out, _ = self.registry.create(rt, self._ns(rt, namespace, obj), obj, user, dry_run, admit)
        return out

    def get(self, resource: str, name: str, namespace: str | None = None) -> Obj:
        rt = self._rt(resource)
        return self.registry.get(rt, self._ns(rt, namespace), name)

    def try_get(self, resource: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.get(resource, name, namespace)
        except errors.ApiError as e:
            if e.code == 404:
                return None
            raise

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[Obj]:
        """Items (with kind/apiVersion) across all namespaces when ``namespace`` is None."""
        rt = self._rt(resource)
        out = self.registry.list(rt, namespace, label_selector, field_selector)
        return [{"apiVersion": rt.api_version, "kind": rt.kind, **o} for o in out["items"]]

    def objects(self, resource: str, namespace: str | None = None) -> builtins.list[Obj]:
        return self.list(resource, namespace)

    def update(
        self,
        resource: str,
        obj: Obj,
        namespace: str | None = None,
        *,
        subresource: str = "",
        admit: bool = False,
        user: User = SYSTEM_ADMIN,
    ) -> Obj:
        """Update; ``admit=True`` runs the admission webhooks as an HTTP PUT would (for the resource
        itself and for ``subresource="ephemeralcontainers"``)."""
        rt = self._rt(resource)
        out, _ = self.registry.update(
            rt, self._ns(rt, namespace, obj), obj["metadata"]["name"], obj, subresource, user, admit=admit
        )
        return out

    def update_status(self, resource: str, obj: Obj, namespace: str | None = None) -> Obj:
        return self.update(resource, obj, namespace, subresource="status")

    def patch(
        self,
        resource: str,
        name: str,
        patch: Obj | builtins.list[Any],
        namespace: str | None = None,
        *,
        patch_type: str = "strategic",
        subresource: str = "",
        admit: bool = False,
        user: User = SYSTEM_ADMIN,
    ) -> Obj:
        """``patch_type``: "strategic", "merge" or "json" (RFC 6902 list of operations); ``admit=True``
        runs the admission webhooks as an HTTP PATCH would. ``kubectl debug`` is
        ``patch("pods", name, {"spec": {"ephemeralContainers": [...]}}, ns,
        subresource="ephemeralcontainers", admit=True)``."""
        rt = self._rt(resource)
        ctype = {
            "strategic": "application/strategic-merge-patch+json",
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        body = json.dumps(patch).encode()
        out, _ = self.registry.patch(
            rt, self._ns(rt, namespace), name, ctype, body, subresource, user, admit=admit
        )
        return out

    def delete(self, resource: str, name: str, namespace: str | None = None) -> Obj:
        rt = self._rt(resource)
        return self.registry.delete(rt, self._ns(rt, namespace), name)

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self.store.rv

    # -- fault injection --------------------------------------------------------------------------

    def _register_watch(self, w: _WatchStream) -> None:
        with self._watch_lock:
            self._watches.add(w)

    def _unregister_watch(self, w: _WatchStream) -> None:
        with self._watch_lock:
            self._watches.discard(w)

    @property
    def open_watches(self) -> int:
        with self._watch_lock:
            return len(self._watches)

    def close_watches(self, abrupt: bool = False) -> int:
        """End every open watch now: gracefully (terminating chunk, like an apiserver timeout) or, with
        ``abrupt=True``, by dropping the TCP connection mid-stream. Returns how many were closed."""
        with self._watch_lock:
            streams = list(self._watches)
        for w in streams:
            w.closed = True
            w.abrupt = abrupt
        with self.store.cond:
            self.store.cond.notify_all()
        if abrupt:
            for w in streams:
                with contextlib.suppress(OSError):
                    w.conn.shutdown(socket.SHUT_RDWR)
        return len(streams)

    def stall_watches(self) -> int:
        """Open watches stop sending anything (events, bookmarks) but keep their sockets open."""
        with self._watch_lock:
            for w in self._watches:
                w.stalled = True
            return len(self._watches)

    def unstall_watches(self) -> None:
        """Stalled watches resume and deliver everything they held back, in order."""
        with self._watch_lock:
            for w in self._watches:
                w.stalled = False
        with self.store.cond:
            self.store.cond.notify_all()

    def fail_requests(
        self,
        count: int | None = None,
        share: float | None = None,
        status: int = 500,
        retry_after: int | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer API requests with ``status`` (500, or 429 with Retry-After): the next ``count`` of them,
        or a random ``share`` (0..1) of them, or (both None) all of them until ``clear_faults()``.
        ``path_contains`` restricts the fault to matching request paths (query string included)."""
        with self._fault_lock:
            self._fault = _FaultRule(count, share, status, retry_after, path_contains)

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._fault = None
        self.unstall_watches()

    def _maybe_inject_fault(self, method: str, path: str) -> None:
        with self._fault_lock:
            rule = self._fault
            if rule is None or (rule.path_contains and rule.path_contains not in path):
                return
            if rule.share is not None and self._rand.random() >= rule.share:
                return
            if rule.remaining is not None:
                if rule.remaining <= 0:
                    self._fault = None
                    return
                rule.remaining -= 1
        if rule.status == 429:
            raise errors.too_many_requests(rule.retry_after if rule.retry_after is not None else 1)
        err = (
            errors.internal("injected fault")
            if rule.status == 500
            else errors.ApiError(
                rule.status, "InternalError" if rule.status >= 500 else "BadRequest", "injected fault"
            )
        )
        if rule.retry_after is not None:
            err.headers["Retry-After"] = str(rule.retry_after)
        raise err

    def compact(self) -> None:
        """Compact history at the current resourceVersion: older RVs now answer 410 on watch, and
        continue tokens from before expire. Open watches that are up to date keep going."""
        self.store.compact()

    # -- bookkeeping and discovery ---------------------------------------------------------------

    def _record(self, method: str, path: str, user: str, status: int) -> None:
        self.request_log.append(RequestRecord(method, path, user, status))

    def requests(
        self, method: str | None = None, route_prefix: str | None = None
    ) -> builtins.list[RequestRecord]:
        """Filtered view of ``request_log``."""
        return [
            r
            for r in list(self.request_log)
            if (method is None or r.method == method)
            and (route_prefix is None or r.route.startswith(route_prefix))
        ]

    def version_info(self) -> Obj:
        return {
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.0-fake",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _discovery(self, path: str) -> Obj | None:
        groups: dict[str, builtins.list[ResourceType]] = {}
        for rt in RESOURCE_TYPES:
            groups.setdefault(rt.group, []).append(rt)
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                ],
            }
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                    }
                    for g in sorted(groups)
                    if g
                ],
            }
        segs = [s for s in path.split("/") if s]
        if segs == ["api", "v1"]:
            group, version = "", "v1"
        elif len(segs) == 3 and segs[0] == "apis" and segs[1] in groups:
            group, version = segs[1], segs[2]
        else:
            return None
        resources: builtins.list[Obj] = []
        for rt in groups.get(group, []):
            if rt.version != version:
                continue
            resources.append(
                {
                    "name": rt.resource,
                    "singularName": rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": _RESOURCE_LIST_VERBS,
                }
            )
            for sub in rt.subresources:
                resources.append(
                    {
                        "name": f"{rt.resource}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }
