"""Thin raw-JSON access to the Kubernetes API.

`kubernetes.config` reads the connection (in-cluster service account, else KUBECONFIG) into a
`kubernetes.client.Configuration`; everything after that is plain `requests` over JSON. Nothing here
deserialises into the client's models: that costs several times a `json.loads` per object and the
listener only reads a handful of fields.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
USER_AGENT = "pulltag-listener"


class KubeError(Exception):
    """The API server answered with an error status, or could not be reached (`status` None)."""

    def __init__(
        self, message: str, *, status: int | None = None, reason: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def conflict(self) -> bool:
        return self.status == 409


class ClusterAPI(Protocol):
    """What the work side (confirmer, tagger, catch-up) asks of the API server: `KubeClient` in
    production, an in-memory fake in unit tests."""

    def get_pod(self, namespace: str, name: str) -> Obj | None: ...

    def list_pods(self, namespace: str | None = None, limit: int = 500) -> Iterator[Obj]: ...

    def namespace_labels(self, name: str) -> dict[str, str]: ...

    def create_event(self, namespace: str, event: Obj) -> Obj: ...


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate, read once at start."""

    host: str
    verify: bool | str = True  # a CA bundle path, or True/False
    cert: tuple[str, str] | None = None
    auth_header: Callable[[], str | None] = field(default=lambda: None)
    in_cluster: bool = False


def load_config(kubeconfig: str | None = None) -> KubeConfig:
    """In-cluster config when running in a pod, else KUBECONFIG (or ~/.kube/config)."""
    from kubernetes import client, config

    cfg = client.Configuration()
    in_cluster = kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if in_cluster:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=cfg, persist_config=False
        )
    verify: bool | str = (cfg.ssl_ca_cert or True) if cfg.verify_ssl else False
    cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file and cfg.key_file else None

    def auth_header() -> str | None:
        # Asked per request: the client's refresh hook re-reads rotated service-account tokens.
        token: str | None = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            return token if " " in token else f"Bearer {token}"
        if cfg.username or cfg.password:
            basic: str | None = cfg.get_basic_auth_token()
            return basic
        return None

    return KubeConfig(host=str(cfg.host).rstrip("/"), verify=verify, cert=cert, auth_header=auth_header)


def own_namespace(default: str = "pulltag-system") -> str:
    """The pod's namespace in-cluster, else the default."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or default
    except OSError:
        return default


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_from(resp: requests.Response, what: str) -> KubeError:
    reason, message = "", ""
    with contextlib.suppress(ValueError):
        status = resp.json()
        if isinstance(status, dict):
            reason = str(status.get("reason") or "")
            message = str(status.get("message") or "")
    text = f"{what}: HTTP {resp.status_code} {reason}: {message}".rstrip(": ")
    return KubeError(text, status=resp.status_code, reason=reason, retry_after=_retry_after(resp))


class WatchStream:
    """One open watch response: iterate raw JSON lines; `abort()` from another thread unblocks a read."""

    def __init__(self, resp: requests.Response) -> None:
        self._resp = resp

    def lines(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        buffer = b""
        for chunk in self._resp.raw.stream(chunk_size, decode_content=True):
            if b"\n" not in chunk:
                buffer += chunk
                continue
            parts = (buffer + chunk).split(b"\n")
            buffer = parts.pop()
            yield from parts
        if buffer.strip():
            yield buffer

    def abort(self) -> None:
        # Shut the socket down underneath the TLS layer: that wakes a thread blocked in a read at once,
        # where closing the response would wait for the read timeout.
        conn = getattr(self._resp.raw, "connection", None) or getattr(self._resp.raw, "_connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._resp.close()


class KubeClient:
    """GET/LIST/WATCH/POST/PUT over JSON. Safe to share between threads (one session per thread)."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        connect_timeout: float = 5.0,
        request_timeout: float = 30.0,
        namespace_cache_seconds: float = 60.0,
    ) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._local = threading.local()
        self._ns_cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._ns_cache_seconds = namespace_cache_seconds
        self._ns_lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.verify = self.config.verify
            if self.config.cert:
                session.cert = self.config.cert
            session.headers["User-Agent"] = USER_AGENT
            session.headers["Accept"] = "application/json"
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Obj | None = None,
        read_timeout: float | None = None,
        stream: bool = False,
    ) -> requests.Response:
        headers: dict[str, str] = {}
        auth = self.config.auth_header()
        if auth:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        timeout = (self.connect_timeout, read_timeout if read_timeout is not None else self.request_timeout)
        try:
            return self._session().request(
                method,
                self.config.host + path,
                params=params,
                data=data,
                headers=headers,
                timeout=timeout,
                stream=stream,
                # Per request: requests lets REQUESTS_CA_BUNDLE override a session's CA file.
                verify=self.config.verify,
            )
        except requests.RequestException as exc:
            raise KubeError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Obj:
        resp = self.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise _error_from(resp, f"{method} {path}")
        try:
            obj = resp.json()
        except ValueError as exc:
            raise KubeError(f"{method} {path}: answer is not JSON") from exc
        if not isinstance(obj, dict):
            raise KubeError(f"{method} {path}: answer is not a JSON object")
        return obj

    # --- reads -------------------------------------------------------------------------------------

    def get(self, path: str) -> Obj | None:
        """The object at `path`, or None on 404."""
        try:
            return self._json("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def get_pod(self, namespace: str, name: str) -> Obj | None:
        return self.get(f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}")

    def list_pages(
        self, path: str, params: Mapping[str, str | int] | None = None, limit: int = 500
    ) -> Iterator[Obj]:
        """Each page of a paged LIST (limit + continue), as the raw List object."""
        query: dict[str, str | int] = dict(params or {})
        query["limit"] = limit
        while True:
            page = self._json("GET", path, params=query)
            yield page
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    def list_pods(self, namespace: str | None = None, limit: int = 500) -> Iterator[Obj]:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        for page in self.list_pages(path, limit=limit):
            items = page.get("items") or []
            yield from (item for item in items if isinstance(item, dict))

    def namespace_labels(self, name: str) -> dict[str, str]:
        """The namespace's labels, cached briefly: every pull of a burst asks for the same few."""
        now = time.monotonic()
        with self._ns_lock:
            cached = self._ns_cache.get(name)
            if cached is not None and cached[0] > now:
                return cached[1]
        obj = self.get(f"/api/v1/namespaces/{quote(name, safe='')}")
        labels = _labels(obj)
        with self._ns_lock:
            self._ns_cache[name] = (now + self._ns_cache_seconds, labels)
        return labels

    def watch(self, path: str, params: Mapping[str, str | int], read_timeout: float) -> WatchStream:
        query = dict(params)
        query["watch"] = "true"
        resp = self.request("GET", path, params=query, read_timeout=read_timeout, stream=True)
        if resp.status_code >= 400:
            try:
                raise _error_from(resp, f"WATCH {path}")
            finally:
                resp.close()
        return WatchStream(resp)

    # --- writes -------------------------------------------------------------------------------------

    def create(self, path: str, body: Obj) -> Obj:
        return self._json("POST", path, body=body)

    def replace(self, path: str, body: Obj) -> Obj:
        return self._json("PUT", path, body=body)

    def create_event(self, namespace: str, event: Obj) -> Obj:
        return self.create(f"/api/v1/namespaces/{quote(namespace, safe='')}/events", event)


def _labels(obj: Obj | None) -> dict[str, str]:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def pod_labels(pod: Obj | None) -> dict[str, str]:
    return _labels(pod)
