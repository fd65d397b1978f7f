"""A simulated kubelet (plus the scheduler's binding) for the fake Kubernetes API server.

For each pod it schedules the pod to a node, then, as that node's kubelet, pulls each container's image
(init containers in order, then regular containers, then ephemeral containers when they are added) and
reports it exactly as a real kubelet with containerd does:

* core/v1 Events posted through the API (legacy event API, as the kubelet's ``record.EventRecorder``):
  ``Pulling`` then ``Pulled`` (or ``Failed``/``BackOff`` for images the registry does not have), named
  ``<pod>.<hex nanoseconds>``, with the involvedObject, source, timestamps and count of client-go's
  recorder, and client-go's EventCorrelator: a repeat of the same event PATCHes ``count`` and
  ``lastTimestamp`` of the existing event; the tenth distinct message with the same reason for one pod
  within ten minutes becomes ``(combined from similar events): ...``.
* The message wording of the chosen kubelet version (``pkg/kubelet/images/image_manager.go``):

  ====== ===============================================================================================
  <1.19  ``Successfully pulled image "X"``
  1.19+  ``Successfully pulled image "X" in 1.234567891s`` (time.Duration's %v)         (#91563)
  1.26+  ``... in 1.234567891s (1.234568012s including waiting)``                        (#111772)
  1.28+  both ``Truncate(time.Millisecond)``: ``in 1.234s (1.234s including waiting)`` (1.28: assumed)
  1.30+  ``... including waiting). Image size: N bytes.``                                (#121719)
  all    ``Container image "X" already present on machine``
  1.35+  ``... already present on machine and can be accessed by the pod`` (KubeletEnsureSecretPulledImages)
  ====== ===============================================================================================

  ``reportingComponent``/``reportingInstance`` are ``kubelet``/``<node>`` from 1.28 and empty before.
* ``pods/status`` written like the kubelet's status manager (a strategic merge PATCH carrying the pod's
  uid): ``containerStatuses`` (and init/ephemeral) with ``image`` as containerd reports it (normalised,
  ``docker.io/library/nginx:latest``), ``imageID`` ``<registry>/<repo>@<digest>`` (for a multi-arch image
  the index digest), ``containerID`` ``containerd://<64 hex>``, states, phase and conditions.

Digests come from a pluggable ``resolve_digest(image) -> digest | None``; :class:`RegistryResolver`
asks a real registry (``HEAD /v2/<repo>/manifests/<ref>`` with the OCI and Docker Accept headers).
Each node keeps an image cache: a second pod using the same image on the same node gets
``already present on machine`` (for ``imagePullPolicy: IfNotPresent``; ``Always`` pulls again, as a real
kubelet does), and keeps the digest it pulled even if the tag has since moved in the registry.

By default everything goes over the fake's HTTPS interface with bearer tokens: the scheduler as
``system:kube-scheduler``, each kubelet as ``system:node:<node>`` (group ``system:nodes``), with the RBAC
those identities need loaded into the fake. Watchers see exactly what they would see from a real cluster.

Not modelled: the kubelet's event spam filter (25-event burst per object), Node objects, volumes,
probes, the binding subresource (the scheduler's binding is a PATCH of ``spec.nodeName`` followed by the
``PodScheduled`` condition on ``pods/status``), and container exits other than :meth:`restart_container`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from pulltag.images import InvalidReference, parse_reference
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.kubeapi.store import TooOld

__all__ = [
    "CONTAINER_KINDS",
    "Kubelet",
    "KubeletApiError",
    "KubeletVersion",
    "PullError",
    "RegistryResolver",
    "ResolvedImage",
    "go_duration",
    "go_quote",
]

Obj = dict[str, Any]
ResolveDigest = Callable[[str], "str | None"]
ImageSize = Callable[[str], "int | None"]
ContainerKind = Literal["initContainers", "containers", "ephemeralContainers"]

CONTAINER_KINDS: tuple[ContainerKind, ...] = ("initContainers", "containers", "ephemeralContainers")
STATUS_FIELD: dict[str, str] = {
    "initContainers": "initContainerStatuses",
    "containers": "containerStatuses",
    "ephemeralContainers": "ephemeralContainerStatuses",
}

# client-go tools/record: EventAggregator defaults (maxEvents 10 within 600 s) and its message prefix.
_AGGREGATE_MAX_EVENTS = 10
_AGGREGATE_INTERVAL_SECONDS = 600.0
_COMBINED_PREFIX = "(combined from similar events): "

_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


class PullError(Exception):
    """An image pull failed for a reason other than "not found"; the text is the runtime's error."""


class KubeletApiError(RuntimeError):
    """The API server refused one of the kubelet's requests."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


# ---------------------------------------------------------------------------------------------------
# Go formatting


def go_quote(text: str) -> str:
    """Go's ``%q`` for the strings that appear in kubelet messages (strconv.Quote)."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _fmt_frac(value: int, digits: int) -> str:
    """``value`` scaled by 10**-digits, Go style: no trailing zeros, no dot when whole."""
    whole, frac = divmod(value, 10**digits)
    if frac == 0:
        return str(whole)
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()``: "1.234567891s", "313ms", "2.5µs", "1m2.5s", "1h0m0s", "0s"."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    ns = abs(nanoseconds)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_fmt_frac(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_fmt_frac(ns, 6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fmt_frac(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def _truncate_ms(nanoseconds: int) -> int:
    return nanoseconds - nanoseconds % 1_000_000


def _rfc3339(t: datetime.datetime) -> str:
    """metav1.Time as the API serialises it: UTC, whole seconds."""
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ---------------------------------------------------------------------------------------------------
# Kubelet versions


_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?")


@dataclass(frozen=True)
class KubeletVersion:
    """The wording and reporting details of one kubelet minor version."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> KubeletVersion:
        m = _VERSION_RE.fullmatch(text.strip())
        if not m or int(m.group(1)) != 1:
            raise ValueError(f"not a Kubernetes 1.x version: {text!r}")
        return cls(1, int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def reports_component(self) -> bool:
        """reportingComponent/reportingInstance filled (empty before 1.28)."""
        return self.minor >= 28

    @property
    def ensure_secret_pulled_images(self) -> bool:
        """KubeletEnsureSecretPulledImages on by default (beta in 1.35)."""
        return self.minor >= 35

    @property
    def pod_ready_to_start_containers(self) -> bool:
        """The PodReadyToStartContainers condition (beta, on by default, from 1.29)."""
        return self.minor >= 29

    def pulled_message(self, image: str, pull_ns: int, total_ns: int, size: int) -> str:
        q = go_quote(image)
        if self.minor < 19:
            return f"Successfully pulled image {q}"
        if self.minor < 26:
            return f"Successfully pulled image {q} in {go_duration(total_ns)}"
        if self.minor < 28:
            pull, total = go_duration(pull_ns), go_duration(total_ns)
            return f"Successfully pulled image {q} in {pull} ({total} including waiting)"
        pull, total = go_duration(_truncate_ms(pull_ns)), go_duration(_truncate_ms(total_ns))
        if self.minor < 30:
            return f"Successfully pulled image {q} in {pull} ({total} including waiting)"
        return (
            f"Successfully pulled image {q} in {pull} ({total} including waiting). Image size: {size} bytes."
        )

    def present_message(self, image: str, ensure_secret_pulled: bool | None = None) -> str:
        enabled = self.ensure_secret_pulled_images if ensure_secret_pulled is None else ensure_secret_pulled
        suffix = " and can be accessed by the pod" if enabled else ""
        return f"Container image {go_quote(image)} already present on machine{suffix}"

    def created_message(self, container: str) -> str:
        return f"Created container: {container}" if self.minor >= 32 else f"Created container {container}"

    def backoff_waiting_message(self, image: str, error: str) -> str:
        base = f"Back-off pulling image {go_quote(image)}"
        return f"{base}: ErrImagePull: {error}" if self.minor >= 32 else base


# ---------------------------------------------------------------------------------------------------
# Registry resolution


@dataclass(frozen=True)
class ResolvedImage:
    digest: str  # what the registry serves for the reference (the index digest for a multi-arch image)
    media_type: str
    size: int  # bytes of the content a node stores for its platform (index + manifest + config + layers)


class RegistryResolver:
    """Resolve image references against real registries the way containerd does.

    ``HEAD /v2/<repo>/manifests/<tag-or-digest>`` with the OCI and Docker Accept headers; the digest is
    the ``Docker-Content-Digest`` header. Handles Basic and Bearer-token challenges with the credentials
    ``credentials(registry_host)`` returns. ``endpoints`` maps a registry host to its base URL
    (default ``<scheme>://<host>``). A missing manifest gives None; other failures raise :class:`PullError`.
    """

    def __init__(
        self,
        *,
        scheme: str = "http",
        endpoints: Mapping[str, str] | None = None,
        credentials: Callable[[str], tuple[str, str] | None] | None = None,
        verify: bool | str = True,
        platform: tuple[str, str] = ("linux", "amd64"),
        timeout: float = 10.0,
    ) -> None:
        self.scheme = scheme
        self.endpoints = dict(endpoints or {})
        self.credentials = credentials
        self.verify = verify
        self.platform = platform
        self.timeout = timeout
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def __call__(self, image: str) -> str | None:
        resolved = self.resolve(image)
        return resolved.digest if resolved is not None else None

    def image_size(self, image: str) -> int | None:
        resolved = self.resolve(image)
        return resolved.size if resolved is not None else None

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # no proxies for loopback registries; verify is passed per request
            self._local.session = s
        return s

    def _base(self, host: str) -> str:
        return self.endpoints.get(host, f"{self.scheme}://{host}").rstrip("/")

    def resolve(self, image: str) -> ResolvedImage | None:
        try:
            ref = parse_reference(image)
        except InvalidReference as e:
            raise PullError(f"failed to parse image reference {go_quote(image)}: {e}") from e
        target = ref.digest or ref.tag or "latest"
        display = ref.canonical
        try:
            head = self._request("HEAD", ref.registry, ref.repository, f"manifests/{target}")
            if head.status_code == 404:
                return None
            if head.status_code >= 400:
                raise PullError(self._failure(display, head))
            digest = head.headers.get("Docker-Content-Digest") or ""
            media_type = (head.headers.get("Content-Type") or "").split(";")[0].strip()
            size = self._size(ref.registry, ref.repository, target, media_type)
        except requests.RequestException as e:
            raise PullError(
                f"failed to pull and unpack image {go_quote(display)}: failed to resolve reference "
                f"{go_quote(display)}: failed to do request: {e}"
            ) from e
        if not digest:
            raise PullError(
                f"failed to resolve reference {go_quote(display)}: no Docker-Content-Digest header"
            )
        return ResolvedImage(digest, media_type, size)

    @staticmethod
    def _failure(display: str, resp: requests.Response) -> str:
        if resp.status_code in (401, 403):
            detail = (
                f"pull access denied, repository does not exist or may require authorization: "
                f"server message: insufficient_scope: authorization failed (HTTP {resp.status_code})"
            )
        else:
            detail = f"unexpected status from HEAD request: {resp.status_code} {resp.reason}"
        return (
            f"failed to pull and unpack image {go_quote(display)}: failed to resolve reference "
            f"{go_quote(display)}: {detail}"
        )

    def _size(self, host: str, repo: str, target: str, media_type: str) -> int:
        resp = self._request("GET", host, repo, f"manifests/{target}")
        if resp.status_code >= 400:
            return 0
        total = len(resp.content)
        manifest: Obj = resp.json()
        if media_type in _INDEX_TYPES or "manifests" in manifest:
            chosen = self._pick_platform(manifest.get("manifests") or [])
            if chosen is None:
                return total
            resp = self._request("GET", host, repo, f"manifests/{chosen}")
            if resp.status_code >= 400:
                return total
            total += len(resp.content)
            manifest = resp.json()
        total += int((manifest.get("config") or {}).get("size") or 0)
        total += sum(int(layer.get("size") or 0) for layer in manifest.get("layers") or [])
        return total

    def _pick_platform(self, manifests: Sequence[Obj]) -> str | None:
        os_, arch = self.platform
        for m in manifests:
            p = m.get("platform") or {}
            if p.get("os") == os_ and p.get("architecture") == arch:
                return str(m.get("digest"))
        return str(manifests[0].get("digest")) if manifests else None

    def _request(self, method: str, host: str, repo: str, path: str) -> requests.Response:
        url = f"{self._base(host)}/v2/{repo}/{path}"
        headers = {"Accept": _MANIFEST_ACCEPT}
        with self._lock:
            token = self._tokens.get((host, repo))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = self._session().request(method, url, headers=headers, verify=self.verify, timeout=self.timeout)
        if resp.status_code != 401:
            return resp
        creds = self.credentials(host) if self.credentials else None
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        if scheme.lower() == "basic":
            if creds is None:
                return resp
            return self._session().request(
                method,
                url,
                headers={"Accept": _MANIFEST_ACCEPT},
                auth=creds,
                verify=self.verify,
                timeout=self.timeout,
            )
        if scheme.lower() != "bearer":
            return resp
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        query = {
            "service": params.get("service", ""),
            "scope": params.get("scope") or f"repository:{repo}:pull",
        }
        token_resp = self._session().get(
            params.get("realm", ""), params=query, auth=creds, verify=self.verify, timeout=self.timeout
        )
        if token_resp.status_code >= 400:
            return resp
        body = token_resp.json()
        token = str(body.get("token") or body.get("access_token") or "")
        with self._lock:
            self._tokens[(host, repo)] = token
        headers["Authorization"] = f"Bearer {token}"
        return self._session().request(method, url, headers=headers, verify=self.verify, timeout=self.timeout)


# ---------------------------------------------------------------------------------------------------
# API access: over HTTPS with a token per identity, or in-process


class _Api:
    """The few calls the scheduler and kubelets make, as one identity."""

    def __init__(
        self, fake: FakeKubeAPI, username: str, groups: Sequence[str], http: bool, token: str | None = None
    ) -> None:
        self.fake = fake
        self.username = username
        self.http = http
        self.token = token or (fake.add_token(username, groups) if http else "")
        self.open_watch: requests.Response | None = None
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # REQUESTS_CA_BUNDLE / proxies must not override the fake's CA
            s.verify = self.fake.ca_file
            s.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session = s
        return s

    def _call(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Obj:
        data = json.dumps(body).encode() if body is not None else None
        last: KubeletApiError | None = None
        for attempt in range(6):
            try:
                resp = self._session().request(
                    method,
                    self.fake.url + path,
                    data=data,
                    params=params,
                    headers={"Content-Type": content_type, "Accept": "application/json"},
                    timeout=30,
                )
            except requests.ConnectionError as e:
                last = KubeletApiError(method, path, 0, str(e))
            else:
                if resp.status_code < 400:
                    return dict(resp.json())
                last = KubeletApiError(method, path, resp.status_code, resp.text)
                if resp.status_code not in (429, 500, 502, 503, 504):
                    raise last
            time.sleep(min(0.5, 0.02 * 2**attempt))  # client retry backoff, not synchronisation
        assert last is not None
        raise last

    @staticmethod
    def _raise_in_process(e: Exception, method: str, path: str) -> KubeletApiError:
        code = int(getattr(e, "code", 500))
        return KubeletApiError(method, path, code, str(e))

    def get_pod(self, namespace: str, name: str) -> Obj | None:
        if not self.http:
            return self.fake.try_get("pods", name, namespace)
        try:
            return self._call("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except KubeletApiError as e:
            if e.status == 404:
                return None
            raise

    def patch_pod(self, namespace: str, name: str, patch: Obj, subresource: str = "") -> Obj:
        sub = f"/{subresource}" if subresource else ""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}{sub}"
        if not self.http:
            try:
                return self.fake.patch("pods", name, patch, namespace, subresource=subresource)
            except Exception as e:
                raise self._raise_in_process(e, "PATCH", path) from e
        return self._call("PATCH", path, patch, "application/strategic-merge-patch+json")

    def create_event(self, namespace: str, event: Obj) -> Obj:
        path = f"/api/v1/namespaces/{namespace}/events"
        if not self.http:
            try:
                return self.fake.create("events", event, namespace)
            except Exception as e:
                raise self._raise_in_process(e, "POST", path) from e
        return self._call("POST", path, event)

    def patch_event(self, namespace: str, name: str, patch: Obj) -> Obj:
        path = f"/api/v1/namespaces/{namespace}/events/{name}"
        if not self.http:
            try:
                return self.fake.patch("events", name, patch, namespace)
            except Exception as e:
                raise self._raise_in_process(e, "PATCH", path) from e
        return self._call("PATCH", path, patch, "application/strategic-merge-patch+json")

    def list_pods(self) -> tuple[list[Obj], str]:
        if not self.http:
            rv = str(self.fake.resource_version)
            return self.fake.list("pods"), rv
        out = self._call("GET", "/api/v1/pods")
        return list(out.get("items") or []), str((out.get("metadata") or {}).get("resourceVersion") or "")

    def watch_pods(self, resource_version: str, stop: threading.Event) -> Iterator[tuple[str, Obj]]:
        """One watch request (HTTP) from ``resource_version``; yields (type, object) until it ends."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "60",
        }
        resp = self._session().get(
            self.fake.url + "/api/v1/pods", params=params, stream=True, timeout=(10, 5)
        )
        self.open_watch = resp
        try:
            if resp.status_code >= 400:
                raise KubeletApiError("GET", "/api/v1/pods?watch", resp.status_code, resp.text)
            lines = resp.iter_lines()
            while not stop.is_set():
                try:
                    line = next(lines)
                except StopIteration:
                    return
                except requests.exceptions.ConnectionError as e:
                    # a read timeout between events (bookmarks come every second) or a dropped stream
                    if "timed out" in str(e).lower():
                        continue
                    return
                if line:
                    ev = json.loads(line)
                    yield str(ev.get("type")), dict(ev.get("object") or {})
        finally:
            resp.close()


# ---------------------------------------------------------------------------------------------------
# client-go's EventCorrelator (aggregation + dedup), per kubelet


@dataclass
class _EventLog:
    name: str
    namespace: str
    count: int
    first_timestamp: str


@dataclass
class _AggregateRecord:
    local_keys: set[str]
    last: float


class _Recorder:
    """``record.EventRecorder`` of one component on one host, with client-go's correlator semantics."""

    def __init__(
        self,
        api: _Api,
        component: str,
        host: str,
        reporting: bool,
        clock: Callable[[], datetime.datetime],
        name_clock: Callable[[], int],
    ) -> None:
        self.api = api
        self.component = component
        self.host = host
        self.reporting = reporting
        self._clock = clock
        self._name_clock = name_clock
        self._logs: dict[str, _EventLog] = {}
        self._aggregates: dict[str, _AggregateRecord] = {}
        self._lock = threading.Lock()

    def record(self, ref: Obj, event_type: str, reason: str, message: str, namespace: str) -> Obj:
        now = self._clock()
        ts = _rfc3339(now)
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref['name']}.{self._name_clock():x}", "namespace": namespace},
            "involvedObject": dict(ref),
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": event_type,
            "eventTime": None,
            "reportingComponent": self.component if self.reporting else "",
            "reportingInstance": self.host if self.reporting else "",
        }
        with self._lock:
            event, key = self._aggregate(event, now.timestamp())
            log = self._logs.get(key)
            patch: Obj | None = None
            if log is not None:
                event["metadata"]["name"] = log.name
                event["firstTimestamp"] = log.first_timestamp
                event["count"] = log.count + 1
                patch = {
                    "count": event["count"],
                    "lastTimestamp": event["lastTimestamp"],
                    "message": event["message"],
                }
            self._logs[key] = _EventLog(
                event["metadata"]["name"], namespace, event["count"], event["firstTimestamp"]
            )
        if patch is not None:
            try:
                return self.api.patch_event(namespace, event["metadata"]["name"], patch)
            except KubeletApiError as e:
                if e.status != 404:
                    raise
                # The event expired: client-go creates it again under the same name and count.
        return self.api.create_event(namespace, event)

    def _aggregate(self, event: Obj, now: float) -> tuple[Obj, str]:
        """EventAggregator.EventAggregate with EventAggregatorByReasonFunc."""
        inv = event["involvedObject"]
        src = event["source"]
        event_key = "".join(
            [
                src["component"],
                src["host"],
                inv.get("kind", ""),
                inv.get("namespace", ""),
                inv.get("name", ""),
                inv.get("fieldPath", ""),
                inv.get("uid", ""),
                inv.get("apiVersion", ""),
                event["type"],
                event["reason"],
                event["message"],
            ]
        )
        aggregate_key = "".join(
            [
                src["component"],
                src["host"],
                inv.get("kind", ""),
                inv.get("namespace", ""),
                inv.get("name", ""),
                inv.get("uid", ""),
                inv.get("apiVersion", ""),
                event["type"],
                event["reason"],
                event["reportingComponent"],
                event["reportingInstance"],
            ]
        )
        record = self._aggregates.get(aggregate_key)
        if record is None or now - record.last > _AGGREGATE_INTERVAL_SECONDS:
            record = _AggregateRecord(set(), now)
        record.local_keys.add(event["message"])
        record.last = now
        self._aggregates[aggregate_key] = record
        if len(record.local_keys) < _AGGREGATE_MAX_EVENTS:
            return event, event_key
        record.local_keys.pop()
        combined: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{inv['name']}.{self._name_clock():x}",
                "namespace": event["metadata"]["namespace"],
            },
            "involvedObject": inv,
            "reason": event["reason"],
            "message": _COMBINED_PREFIX + event["message"],
            "source": src,
            "firstTimestamp": event["firstTimestamp"],
            "lastTimestamp": event["lastTimestamp"],
            "count": 1,
            "type": event["type"],
            "eventTime": None,
            "reportingComponent": "",
            "reportingInstance": "",
        }
        return combined, aggregate_key


# ---------------------------------------------------------------------------------------------------
# Runtime state


@dataclass
class _Container:
    kind: ContainerKind
    name: str
    spec_image: str
    image: str = ""  # as the runtime reports it
    image_id: str = ""
    container_id: str = ""
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    last_terminated: Obj | None = None
    sidecar: bool = False


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    node: str
    pod_ip: str
    host_ip: str
    start_time: str
    scheduled_at: str
    containers: dict[tuple[str, str], _Container] = field(default_factory=dict)
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)  # condition -> (status, time)
    held: bool = False
    dirty: bool = False
    handled_ephemeral: set[str] = field(default_factory=set)


@dataclass
class _CachedImage:
    digest: str
    size: int
    image_id: str


# ---------------------------------------------------------------------------------------------------
# The kubelet


class Kubelet:
    """Scheduler + kubelets of ``nodes``, reporting through ``api`` in the wording of ``version``.

    ``resolve_digest(image)`` gives the digest the registry serves for the image as written in the pod
    spec, or None when the registry does not have it (raise :class:`PullError` for other failures).
    ``image_size(image)`` gives the size for 1.30+ messages (default: ``resolve_digest.image_size`` when
    it is a :class:`RegistryResolver`, else a size derived from the digest).
    ``image_id_delay``: seconds between the Pulled events and the status write carrying imageIDs (done
    by a timer; :meth:`wait_idle` waits for it). ``transport``: "http" (tokens, RBAC) or "inprocess".
    ``scheduling``: "round-robin" or "least-loaded". ``pull_duration``: fixed seconds reported as the pull
    time (None: the real time the resolution took). ``accept``: which pods background mode handles.
    """

    def __init__(
        self,
        api: FakeKubeAPI,
        resolve_digest: Callable[[str], str | None],
        nodes: Sequence[str] = ("node-1", "node-2"),
        version: str = "1.30",
        *,
        image_size: Callable[[str], int | None] | None = None,
        scheduling: Literal["round-robin", "least-loaded"] = "round-robin",
        image_id_delay: float = 0.0,
        pull_duration: float | None = None,
        transport: Literal["http", "inprocess"] = "http",
        ensure_secret_pulled_images: bool | None = None,
        accept: Callable[[Obj], bool] | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("at least one node is needed")
        self.api = api
        self.resolve_digest = resolve_digest
        self.nodes: tuple[str, ...] = tuple(nodes)
        self.version = KubeletVersion.parse(version)
        self.image_size = image_size or (
            resolve_digest.image_size if isinstance(resolve_digest, RegistryResolver) else None
        )
        self.scheduling = scheduling
        self.image_id_delay = image_id_delay
        self.pull_duration = pull_duration
        self.ensure_secret_pulled_images = ensure_secret_pulled_images
        self.accept = accept
        http = transport == "http"
        if http:
            self._install_rbac()
        self._scheduler = _Api(api, "system:kube-scheduler", (), http)
        self._node_api = {n: _Api(api, f"system:node:{n}", ("system:nodes",), http) for n in self.nodes}
        self._recorders = {
            n: _Recorder(
                self._node_api[n], "kubelet", n, self.version.reports_component, _now, self._next_name_ns
            )
            for n in self.nodes
        }
        self._images: dict[str, dict[str, _CachedImage]] = {n: {} for n in self.nodes}
        self._pods: dict[str, _Pod] = {}  # by uid
        self._rr = 0
        self._last_name_ns = 0
        self._name_lock = threading.Lock()
        self._lock = threading.RLock()  # one pod at a time, like a serialized image puller
        self._idle = threading.Condition()
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._busy = 0
        self._timers: set[threading.Timer] = set()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._forgers: dict[str, _Api] = {}

    # -- public API ------------------------------------------------------------------------------

    def run_pod(self, namespace: str, name: str, *, hold_status: bool = False) -> Obj:
        """Schedule (if needed) and run the pod now, synchronously; also starts ephemeral containers added
        since. ``hold_status=True`` posts the events but keeps the status (imageIDs) until
        :meth:`release_status`. Returns the pod as last written."""
        with self._lock:
            pod = self._scheduler.get_pod(namespace, name)
            if pod is None:
                raise KeyError(f"pod {namespace}/{name} not found")
            return self._run(pod, hold_status)

    def release_status(self, namespace: str, name: str) -> Obj | None:
        """Write the status held back by ``hold_status`` or ``image_id_delay`` now."""
        with self._lock:
            st = self._find(namespace, name)
            if st is None:
                raise KeyError(f"pod {namespace}/{name} was not run by this kubelet")
            st.held = False
            st.dirty = True
            return self._write_status(st)

    def restart_container(self, namespace: str, name: str, container: str, *, exit_code: int = 137) -> Obj:
        """The container exits and the kubelet starts it again: the image is ensured again (``already
        present on machine`` for IfNotPresent, a repeat the correlator counts), restartCount goes up."""
        with self._lock:
            st = self._find(namespace, name)
            pod = self._scheduler.get_pod(namespace, name)
            if st is None or pod is None:
                raise KeyError(f"pod {namespace}/{name} was not run by this kubelet")
            found = [c for c in st.containers.values() if c.name == container]
            if not found:
                raise KeyError(f"no container {container!r} in {namespace}/{name}")
            c = found[0]
            now = _rfc3339(_now())
            if c.container_id:
                c.last_terminated = {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Error" if exit_code else "Completed",
                        "startedAt": c.started_at,
                        "finishedAt": now,
                        "containerID": c.container_id,
                    }
                }
                c.restart_count += 1
            spec = self._container_spec(pod, c.kind, c.name)
            if self._ensure_image(st, pod, c, spec):
                self._start_container(st, pod, c)
            st.dirty = True
            return self._flush(st) or pod

    def post_pulled(
        self,
        namespace: str,
        pod_name: str,
        container: str,
        image: str,
        *,
        message: str | None = None,
        reason: str = "Pulled",
        reporting_component: str = "kubelet",
        reporting_instance: str | None = None,
        source_component: str = "kubelet",
        source_host: str | None = None,
        field_path: str | None = None,
        pod_uid: str | None = None,
        username: str = "system:serviceaccount:default:forger",
        token: str | None = None,
    ) -> Obj:
        """Post a Pulled-looking event as someone who is not a kubelet (a forged event for security
        tests). By default it copies a real kubelet's shape exactly; every field can be overridden.
        ``token``: post with this bearer token (then RBAC decides); else ``username`` gets a token and
        the right to create events. Goes over HTTP unless the kubelet is in-process."""
        pod = self._scheduler.get_pod(namespace, pod_name)
        uid = pod_uid if pod_uid is not None else ((pod or {}).get("metadata") or {}).get("uid", "")
        node = ((pod or {}).get("spec") or {}).get("nodeName") or self.nodes[0]
        kind = "containers"
        for k in CONTAINER_KINDS:
            if any(c.get("name") == container for c in ((pod or {}).get("spec") or {}).get(k) or []):
                kind = k
                break
        now = _rfc3339(_now())
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{pod_name}.{self._next_name_ns():x}", "namespace": namespace},
            "involvedObject": {
                "kind": "Pod",
                "namespace": namespace,
                "name": pod_name,
                "uid": uid,
                "apiVersion": "v1",
                "resourceVersion": ((pod or {}).get("metadata") or {}).get("resourceVersion", ""),
                "fieldPath": field_path if field_path is not None else f"spec.{kind}{{{container}}}",
            },
            "reason": reason,
            "message": message
            if message is not None
            else self.version.pulled_message(image, 1_234_567_891, 1_234_567_891, 12345678),
            "source": {
                "component": source_component,
                "host": source_host if source_host is not None else node,
            },
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": "Normal",
            "eventTime": None,
            "reportingComponent": reporting_component,
            "reportingInstance": reporting_instance if reporting_instance is not None else node,
        }
        return self._forger(username, token).create_event(namespace, event)

    def start(self) -> Kubelet:
        """Background mode: watch pods and run every new pod (and new ephemeral containers)."""
        if self._threads:
            return self
        self._stop.clear()
        watcher = threading.Thread(target=self._watch_loop, name="sim-kubelet-watch", daemon=True)
        worker = threading.Thread(target=self._work_loop, name="sim-kubelet-worker", daemon=True)
        self._threads = [watcher, worker]
        watcher.start()
        worker.start()
        return self

    def stop(self) -> None:
        """Stop background mode (pending status timers are cancelled); re-raises a background error."""
        self._stop.set()
        self._queue.put(None)
        watch_resp = self._scheduler.open_watch
        if watch_resp is not None:
            with contextlib.suppress(Exception):  # unblocks the watch thread's read
                watch_resp.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []
        with self._idle:
            for timer in list(self._timers):
                timer.cancel()
            self._timers.clear()
            self._idle.notify_all()
        self._raise_background_error()

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is left to do: in background mode every existing pod this kubelet should
        run has been run (checked against the API, so a pod created just before this call counts), the
        queue is empty and no delayed status write is pending. Raises TimeoutError, or a background error."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_background_error()
            with self._idle:
                quiet = self._busy == 0 and not self._queued and not self._timers
            if quiet:
                pending = self._pending_pods() if self._threads else []
                if not pending:
                    return
            else:
                pending = []
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = (
                    ", ".join(pending)
                    or f"busy={self._busy} queued={len(self._queued)} timers={len(self._timers)}"
                )
                raise TimeoutError(f"simulated kubelet not idle after {timeout:g}s: {what}")
            with self._idle:
                self._idle.wait(min(remaining, 0.05))

    def image_cache(self, node: str) -> dict[str, str]:
        """The images present on ``node``: normalised reference -> digest."""
        with self._lock:
            return {ref: c.digest for ref, c in self._images[node].items()}

    def node_of(self, namespace: str, name: str) -> str | None:
        st = self._find(namespace, name)
        return st.node if st else None

    # -- scheduling -----------------------------------------------------------------------------

    def _pick_node(self) -> str:
        if self.scheduling == "least-loaded":
            load = {n: 0 for n in self.nodes}
            for st in self._pods.values():
                if st.node in load:
                    load[st.node] += 1
            return min(self.nodes, key=lambda n: (load[n], self.nodes.index(n)))
        node = self.nodes[self._rr % len(self.nodes)]
        self._rr += 1
        return node

    def _schedule(self, pod: Obj) -> Obj:
        meta = pod["metadata"]
        node = self._pick_node()
        pod = self._scheduler.patch_pod(
            meta["namespace"], meta["name"], {"metadata": {"uid": meta["uid"]}, "spec": {"nodeName": node}}
        )
        now = _rfc3339(_now())
        return self._scheduler.patch_pod(
            meta["namespace"],
            meta["name"],
            {
                "metadata": {"uid": meta["uid"]},
                "status": {
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "True",
                            "lastProbeTime": None,
                            "lastTransitionTime": now,
                        },
                    ]
                },
            },
            "status",
        )

    # -- running pods -----------------------------------------------------------------------------

    def _find(self, namespace: str, name: str) -> _Pod | None:
        for st in self._pods.values():
            if st.namespace == namespace and st.name == name:
                return st
        return None

    def _next_name_ns(self) -> int:
        with self._name_lock:
            ns = max(time.time_ns(), self._last_name_ns + 1)
            self._last_name_ns = ns
            return ns

    def _run(self, pod: Obj, hold_status: bool) -> Obj:
        meta = pod["metadata"]
        uid = meta["uid"]
        st = self._pods.get(uid)
        if st is None:
            node = (pod.get("spec") or {}).get("nodeName")
            if not node:
                pod = self._schedule(pod)
                node = pod["spec"]["nodeName"]
            if node not in self._node_api:
                raise ValueError(f"pod {meta['namespace']}/{meta['name']} is bound to unknown node {node!r}")
            st = self._new_state(pod, node)
            st.held = hold_status
            self._pods[uid] = st
            self._start_pod(st, pod)
        else:
            st.held = st.held or hold_status
            self._start_ephemeral(st, pod)
        return self._flush(st) or pod

    def _new_state(self, pod: Obj, node: str) -> _Pod:
        idx = self.nodes.index(node)
        count = sum(1 for p in self._pods.values() if p.node == node)
        now = _rfc3339(_now())
        scheduled = next(
            (
                c.get("lastTransitionTime") or now
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ),
            now,
        )
        st = _Pod(
            namespace=pod["metadata"]["namespace"],
            name=pod["metadata"]["name"],
            uid=pod["metadata"]["uid"],
            node=node,
            pod_ip=f"10.244.{idx + 1}.{count + 2}",
            host_ip=f"172.18.0.{idx + 2}",
            start_time=now,
            scheduled_at=scheduled,
        )
        spec = pod.get("spec") or {}
        for kind in ("initContainers", "containers"):
            for c in spec.get(kind) or []:
                st.containers[(kind, c["name"])] = _Container(
                    kind,
                    c["name"],
                    c.get("image", ""),
                    waiting_reason="PodInitializing"
                    if kind == "containers" and spec.get("initContainers")
                    else "ContainerCreating",
                    sidecar=kind == "initContainers" and c.get("restartPolicy") == "Always",
                )
        for cond in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
            st.transitions[cond] = ("False", now)
        st.transitions["PodScheduled"] = ("True", scheduled)
        return st

    def _start_pod(self, st: _Pod, pod: Obj) -> None:
        # The first status the kubelet writes: Pending, sandbox being created, nothing pulled yet.
        st.dirty = True
        self._flush(st)
        self._set_condition(st, "PodReadyToStartContainers", "True")
        spec = pod.get("spec") or {}
        for c_spec in spec.get("initContainers") or []:
            c = st.containers[("initContainers", c_spec["name"])]
            if not self._ensure_image(st, pod, c, c_spec):
                st.dirty = True
                return  # init containers run in order: the pod waits here
            self._start_container(st, pod, c)
            if not c.sidecar:
                c.state, c.finished_at = "terminated", _rfc3339(_now())
            st.dirty = True
            self._flush(st)
        self._set_condition(st, "Initialized", "True")
        for c in st.containers.values():
            if c.kind == "containers" and c.waiting_reason == "PodInitializing":
                c.waiting_reason = "ContainerCreating"
        for c_spec in spec.get("containers") or []:
            c = st.containers[("containers", c_spec["name"])]
            if self._ensure_image(st, pod, c, c_spec):
                self._start_container(st, pod, c)
        st.dirty = True
        self._start_ephemeral(st, pod)

    def _start_ephemeral(self, st: _Pod, pod: Obj) -> None:
        for c_spec in (pod.get("spec") or {}).get("ephemeralContainers") or []:
            name = c_spec.get("name", "")
            if name in st.handled_ephemeral:
                continue
            st.handled_ephemeral.add(name)
            c = _Container("ephemeralContainers", name, c_spec.get("image", ""))
            st.containers[("ephemeralContainers", name)] = c
            if self._ensure_image(st, pod, c, c_spec):
                self._start_container(st, pod, c)
            st.dirty = True

    @staticmethod
    def _container_spec(pod: Obj, kind: str, name: str) -> Obj:
        for c in (pod.get("spec") or {}).get(kind) or []:
            if c.get("name") == name:
                return dict(c)
        raise KeyError(f"no {kind} {name!r} in the pod spec")

    def _ref(self, pod: Obj, c: _Container) -> Obj:
        meta = pod["metadata"]
        return {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
            "fieldPath": f"spec.{c.kind}{{{c.name}}}",
        }

    def _event(self, st: _Pod, pod: Obj, c: _Container, event_type: str, reason: str, message: str) -> None:
        self._recorders[st.node].record(self._ref(pod, c), event_type, reason, message, st.namespace)

    def _ensure_image(self, st: _Pod, pod: Obj, c: _Container, spec: Obj) -> bool:
        """EnsureImageExists: events, node image cache; True when the image is on the node."""
        image = spec.get("image") or ""
        c.spec_image = image
        try:
            ref = parse_reference(image)
        except InvalidReference as e:
            msg = (
                f"Failed to apply default image tag {go_quote(image)}: couldn't parse image reference "
                f"{go_quote(image)}: {e.reason}"
            )
            self._event(st, pod, c, "Warning", "InspectFailed", msg)
            self._event(st, pod, c, "Warning", "Failed", "Error: InvalidImageName")
            c.state, c.waiting_reason, c.waiting_message = "waiting", "InvalidImageName", msg
            return False
        canonical = ref.canonical
        policy = spec.get("imagePullPolicy") or (
            "Always" if (ref.tag == "latest" and not ref.digest) else "IfNotPresent"
        )
        cache = self._images[st.node]
        cached = cache.get(canonical)
        if cached is not None and policy != "Always":
            self._event(
                st,
                pod,
                c,
                "Normal",
                "Pulled",
                self.version.present_message(image, self.ensure_secret_pulled_images),
            )
            c.image, c.image_id = canonical, cached.image_id
            return True
        if policy == "Never":
            msg = f"Container image {go_quote(image)} is not present with pull policy of Never"
            self._event(st, pod, c, "Warning", "ErrImageNeverPull", msg)
            self._event(st, pod, c, "Warning", "Failed", "Error: ErrImageNeverPull")
            c.state, c.waiting_reason, c.waiting_message = "waiting", "ErrImageNeverPull", msg
            return False
        self._event(st, pod, c, "Normal", "Pulling", f"Pulling image {go_quote(image)}")
        started = time.perf_counter_ns()
        pulled = started
        error = ""
        digest: str | None = None
        try:
            digest = self.resolve_digest(image)
            pulled = time.perf_counter_ns()
            if digest is None:
                q = go_quote(canonical)
                error = (
                    f"rpc error: code = NotFound desc = failed to pull and unpack image {q}: "
                    f"failed to resolve reference {q}: {canonical}: not found"
                )
        except PullError as e:
            error = f"rpc error: code = Unknown desc = {e}"
        if digest is None:
            self._event(st, pod, c, "Warning", "Failed", f"Failed to pull image {go_quote(image)}: {error}")
            self._event(st, pod, c, "Warning", "Failed", "Error: ErrImagePull")
            # The next pod sync finds the image in back-off.
            self._event(st, pod, c, "Normal", "BackOff", f"Back-off pulling image {go_quote(image)}")
            self._event(st, pod, c, "Warning", "Failed", "Error: ImagePullBackOff")
            c.state, c.waiting_reason = "waiting", "ImagePullBackOff"
            c.waiting_message = self.version.backoff_waiting_message(image, error)
            return False
        size = self.image_size(image) if self.image_size else None
        if size is None:
            size = 1_000_000 + int(digest.rsplit(":", 1)[-1][:6] or "0", 16)
        # pullDuration (the runtime's pull) and the wall time since "Pulling" (including waiting).
        elapsed, waited = pulled - started, time.perf_counter_ns() - started
        if self.pull_duration is not None:
            elapsed = waited = int(self.pull_duration * 1e9)
        image_id = f"{ref.name}@{digest}"
        cache[canonical] = _CachedImage(digest, size, image_id)
        self._event(st, pod, c, "Normal", "Pulled", self.version.pulled_message(image, elapsed, waited, size))
        c.image, c.image_id = canonical, image_id
        return True

    def _start_container(self, st: _Pod, pod: Obj, c: _Container) -> None:
        c.container_id = "containerd://" + secrets.token_hex(32)
        self._event(st, pod, c, "Normal", "Created", self.version.created_message(c.name))
        self._event(st, pod, c, "Normal", "Started", f"Started container {c.name}")
        c.state, c.waiting_reason, c.waiting_message = "running", "", ""
        c.started_at, c.finished_at = _rfc3339(_now()), ""

    def _set_condition(self, st: _Pod, cond: str, status: str) -> None:
        if st.transitions.get(cond, ("", ""))[0] != status:
            st.transitions[cond] = (status, _rfc3339(_now()))

    # -- status -----------------------------------------------------------------------------------

    def _status(self, st: _Pod) -> Obj:
        regular = [c for c in st.containers.values() if c.kind == "containers"]
        inits = [c for c in st.containers.values() if c.kind == "initContainers"]
        init_done = all(c.state == "terminated" or (c.sidecar and c.state == "running") for c in inits)
        all_running = bool(regular) and all(c.state == "running" for c in regular)
        self._set_condition(st, "Initialized", "True" if init_done else "False")
        ready = "True" if init_done and all_running else "False"
        self._set_condition(st, "ContainersReady", ready)
        self._set_condition(st, "Ready", ready)
        phase = "Running" if init_done and all_running else "Pending"
        conditions = []
        order = ["PodReadyToStartContainers"] if self.version.pod_ready_to_start_containers else []
        unready = " ".join(c.name for c in regular if c.state != "running")
        incomplete = " ".join(c.name for c in inits if c.state != "terminated" and not c.sidecar)
        for cond in [*order, "Initialized", "Ready", "ContainersReady", "PodScheduled"]:
            value, when = st.transitions[cond]
            entry: Obj = {"type": cond, "status": value, "lastProbeTime": None, "lastTransitionTime": when}
            if value == "False" and cond in ("Initialized", "Ready", "ContainersReady"):
                if not init_done:
                    entry["reason"] = "ContainersNotInitialized"
                    entry["message"] = f"containers with incomplete status: [{incomplete}]"
                else:
                    entry["reason"] = "ContainersNotReady"
                    entry["message"] = f"containers with unready status: [{unready}]"
            conditions.append(entry)
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": st.host_ip,
            "podIP": st.pod_ip,
            "podIPs": [{"ip": st.pod_ip}],
            "startTime": st.start_time,
        }
        if self.version.minor >= 28:
            status["hostIPs"] = [{"ip": st.host_ip}]
        for kind in CONTAINER_KINDS:
            entries = [self._container_status(c) for c in st.containers.values() if c.kind == kind]
            if entries or kind != "ephemeralContainers":
                status[STATUS_FIELD[kind]] = entries
        if not inits:
            status.pop("initContainerStatuses")
        return status

    @staticmethod
    def _container_status(c: _Container) -> Obj:
        state: Obj
        if c.state == "running":
            state = {"running": {"startedAt": c.started_at}}
        elif c.state == "terminated":
            state = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": c.started_at,
                    "finishedAt": c.finished_at,
                    "containerID": c.container_id,
                }
            }
        else:
            waiting: Obj = {"reason": c.waiting_reason}
            if c.waiting_message:
                waiting["message"] = c.waiting_message
            state = {"waiting": waiting}
        out: Obj = {
            "name": c.name,
            "state": state,
            "lastState": dict(c.last_terminated or {}),
            "ready": c.state == "running" or (c.kind == "initContainers" and c.state == "terminated"),
            "restartCount": c.restart_count,
            "image": c.image or c.spec_image,
            "imageID": c.image_id if c.state != "waiting" else "",
            "started": c.state == "running",
        }
        if c.container_id and c.state != "waiting":
            out["containerID"] = c.container_id
        if c.kind == "ephemeralContainers":
            out.pop("ready")
            out["ready"] = False  # ephemeral containers are never ready
        return out

    def _flush(self, st: _Pod) -> Obj | None:
        """Write the status if it changed and is not held; schedules the delayed write if configured."""
        if st.held:
            return None
        has_ids = any(c.image_id and c.state != "waiting" for c in st.containers.values())
        if self.image_id_delay > 0 and has_ids and st.dirty:
            self._schedule_flush(st)
            return None
        return self._write_status(st)

    def _write_status(self, st: _Pod) -> Obj | None:
        if not st.dirty:
            return None
        st.dirty = False
        status = self._status(st)
        # As the status manager's two-way merge patch: the uid as a precondition, the kubelet's order of
        # conditions, and explicit nulls for fields a condition no longer has.
        for cond in status["conditions"]:
            cond.setdefault("reason", None)
            cond.setdefault("message", None)
        status["$setElementOrder/conditions"] = [{"type": c["type"]} for c in status["conditions"]]
        try:
            return self._node_api[st.node].patch_pod(
                st.namespace, st.name, {"metadata": {"uid": st.uid}, "status": status}, "status"
            )
        except KubeletApiError as e:
            if e.status == 404:
                return None  # the pod is gone
            raise

    def _schedule_flush(self, st: _Pod) -> None:
        def fire() -> None:
            try:
                with self._lock:
                    self._write_status(st)
            except BaseException as e:  # reported by wait_idle/stop
                self.errors.append(e)
            finally:
                with self._idle:
                    self._timers.discard(timer)
                    self._idle.notify_all()

        timer = threading.Timer(self.image_id_delay, fire)
        timer.daemon = True
        with self._idle:
            self._timers.add(timer)
        timer.start()

    # -- forged events ----------------------------------------------------------------------------

    def _forger(self, username: str, token: str | None) -> _Api:
        http = self._scheduler.http
        key = token or username
        api = self._forgers.get(key)
        if api is None:
            if token is None and http:
                self._grant_events(username)
            api = _Api(self.api, username, (), http, token)
            self._forgers[key] = api
        return api

    def _grant_events(self, username: str) -> None:
        safe = re.sub(r"[^a-z0-9.-]", "-", username.lower()).strip("-")
        self.api.load_manifests(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": f"sim-event-writer-{safe}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "sim:event-writer",
                    },
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": username}],
                }
            ]
        )

    # -- RBAC for the simulated components ----------------------------------------------------------

    def _install_rbac(self) -> None:
        def role(name: str, rules: list[Obj]) -> Obj:
            return {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": rules,
            }

        def binding(name: str, role_name: str, subject: Obj) -> Obj:
            return {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role_name,
                },
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
            }

        events = {
            "apiGroups": ["", "events.k8s.io"],
            "resources": ["events"],
            "verbs": ["create", "patch", "update"],
        }
        self.api.load_manifests(
            [
                # What the Node authorizer grants a kubelet for its own pods (modelled with RBAC).
                role(
                    "sim:node",
                    [
                        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                        {
                            "apiGroups": [""],
                            "resources": ["pods/status"],
                            "verbs": ["get", "patch", "update"],
                        },
                        events,
                    ],
                ),
                binding("sim:node", "sim:node", {"kind": "Group", "name": "system:nodes"}),
                # The parts of system:kube-scheduler used here (binding as a PATCH of spec.nodeName).
                role(
                    "sim:kube-scheduler",
                    [
                        {
                            "apiGroups": [""],
                            "resources": ["pods"],
                            "verbs": ["get", "list", "watch", "patch", "update"],
                        },
                        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
                        events,
                    ],
                ),
                binding(
                    "sim:kube-scheduler",
                    "sim:kube-scheduler",
                    {"kind": "User", "name": "system:kube-scheduler"},
                ),
                role("sim:event-writer", [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]),
            ]
        )

    # -- background mode --------------------------------------------------------------------------

    def _wants(self, pod: Obj) -> bool:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        node = spec.get("nodeName")
        if node and node not in self._node_api:
            return False
        if self.accept is not None and not self.accept(pod):
            return False
        st = self._pods.get(meta.get("uid", ""))
        if st is None:
            return True
        return any(c.get("name") not in st.handled_ephemeral for c in spec.get("ephemeralContainers") or [])

    def _pending_pods(self) -> list[str]:
        pods = self.api.list("pods")  # in-process: this check is not something a watcher should see
        with self._lock:
            return [
                f"{p['metadata'].get('namespace')}/{p['metadata'].get('name')}"
                for p in pods
                if self._wants(p)
            ]

    def _enqueue(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._idle:
            if key in self._queued:
                return
            self._queued.add(key)
        self._queue.put(key)

    def _watch_loop(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    pods, rv = self._scheduler.list_pods()
                    for p in pods:
                        with self._lock:
                            wanted = self._wants(p)
                        if wanted:
                            self._enqueue(p)
                if not self._scheduler.http:
                    try:
                        rv = self._watch_in_process(rv)
                    except TooOld:
                        rv = ""  # compacted past our position (410 Gone over HTTP): relist
                    continue
                for etype, obj in self._scheduler.watch_pods(rv, self._stop):
                    if etype == "ERROR":
                        rv = ""  # 410 Gone: relist
                        break
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    if etype in ("ADDED", "MODIFIED"):
                        with self._lock:
                            wanted = self._wants(obj)
                        if wanted:
                            self._enqueue(obj)
            except Exception:
                if self._stop.wait(0.05):  # reconnect backoff (or the stream was closed by stop())
                    return

    def _watch_in_process(self, rv: str) -> str:
        store = self.api.store
        pos = int(rv)
        with store.cond:
            changes = store.changes_after(pos)
            if not changes:
                store.cond.wait(0.2)
                changes = store.changes_after(pos)
        for ch in changes:
            pos = ch.rv
            if ch.key[0] == "pods" and ch.type != "DELETED":
                with self._lock:
                    wanted = self._wants(ch.obj)
                if wanted:
                    self._enqueue(ch.obj)
        return str(pos)

    def _work_loop(self) -> None:
        while True:
            key = self._queue.get()
            if key is None or self._stop.is_set():
                return
            with self._idle:
                self._busy += 1
                self._queued.discard(key)
            try:
                with self._lock:
                    pod = self._scheduler.get_pod(*key)
                    if pod is not None and self._wants(pod):
                        self._run(pod, False)
            except BaseException as e:
                self.errors.append(e)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _raise_background_error(self) -> None:
        if self.errors:
            err = self.errors[0]
            raise RuntimeError(f"simulated kubelet failed in the background: {err!r}") from err
