"""The whole chain on one machine: the test world the end-to-end suite and `make demo` (tests/demo.py) run in.

- the fake Kubernetes API server, loaded with the Namespaces, RBAC and WebhookConfigurations
  **rendered from `manifests/`** (so a missing or excess permission, or a wrong exemption, shows);
- the webhook under gunicorn over TLS, with the certificates `certs/generate.sh` wrote for kustomize;
- the listener as its own process, authenticated with its ServiceAccount's token;
- a real docker-registry with token auth (and optionally the fake Harbor);
- the store: a real redis-server or a SQLite file;
- the simulated kubelet, handling every new pod in the background.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tests.harness.faultproxy import FaultProxy
from tests.harness.harbor import FakeHarbor
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.kubelet import Kubelet, RegistryResolver
from tests.harness.procs import ManagedProcess, free_port, wait_for
from tests.harness.redis import RedisServer
from tests.harness.registry import PASSWORDS, RegistryServer
from tests.harness.webhook import SERVICE_HOST, WebhookServer

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_NS = "pulltag-system"
# The fake API server serves these kinds; everything else a render holds (Deployments, Services...) is
# what a real cluster would run, and here the harness runs those parts as local processes instead.
LOADED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

StoreKind = Literal["redis", "sqlite"]


def render_manifests(workdir: Path, overlay: str = "overlays/script") -> tuple[list[dict[str, Any]], Path]:
    """`certs/generate.sh` then `kubectl kustomize` of the script-certificate overlay (the certificate mode
    whose files the webhook here reads; self-managed certificates: tests/integration/certs), on a copy of
    manifests/; returns objects + cert dir."""
    copy = workdir / "manifests"
    shutil.copytree(ROOT / "manifests", copy, ignore=shutil.ignore_patterns("generated"))
    generated = copy / "base" / "generated"
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    subprocess.run(
        ["bash", str(ROOT / "certs" / "generate.sh"), "--out", str(generated)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env={"PATH": env_path, "HOME": str(workdir)},
        timeout=120,
    )
    target = copy / overlay if overlay else copy
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(target)], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d], generated


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    images: dict[str, str]


@dataclass(eq=False)
class World:
    workdir: Path
    store_kind: StoreKind = "redis"
    kubelet_version: str = "1.30"
    nodes: Sequence[str] = ("node-1", "node-2")
    with_harbor: bool = True
    tagging: dict[str, Any] = field(default_factory=dict)
    listener_config: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)  # the `retention:` section, when given
    start_listener: bool = True
    start_kubelet: bool = True
    image_id_delay: float = 0.0
    # chaos options: the listener reaches the registry through a fault-injecting proxy (images are then
    # named with the proxy's host); a password-protected Redis; the kubelet's transport to the API server
    registry_proxy: bool = False
    redis_password: str | None = None
    kubelet_transport: Literal["http", "inprocess"] = "http"

    api: FakeKubeAPI = field(init=False)
    registry: RegistryServer = field(init=False)
    harbor: FakeHarbor | None = field(init=False, default=None)
    redis: RedisServer | None = field(init=False, default=None)
    webhook: WebhookServer = field(init=False)
    listener: ManagedProcess | None = field(init=False, default=None)
    kubelet: Kubelet = field(init=False)
    proxy: FaultProxy | None = field(init=False, default=None)
    listeners: dict[str, ManagedProcess] = field(init=False, default_factory=dict)
    metrics_ports: dict[str, int] = field(init=False, default_factory=dict)
    repositories: set[str] = field(init=False, default_factory=set)
    store_url: str = field(init=False, default="")
    config_path: Path = field(init=False)
    metrics_port: int = field(init=False, default=0)
    rendered: list[dict[str, Any]] = field(init=False, default_factory=list)
    _stack: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> World:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rendered, certs = render_manifests(self.workdir / "render")
        self._start_store()
        self.registry = RegistryServer(self.workdir / "registry", "token").start()
        self._stack.callback(self.registry.stop)
        if self.registry_proxy:
            self.proxy = FaultProxy(self.registry.host).start()
            self._stack.callback(self.proxy.stop)
        if self.with_harbor:
            self.harbor = FakeHarbor(self.workdir / "harbor").start()
            self._stack.callback(self.harbor.stop)
        self._write_config()

        self.api = FakeKubeAPI().start()
        self._stack.callback(self.api.close)
        self.api.load_manifests([o for o in self.rendered if o.get("kind") in LOADED_KINDS])
        for ns in ("shop", "ops", "optout"):
            labels = {"pulltag.dev/ignore": "true"} if ns == "optout" else {}
            self.api.create("namespaces", {"metadata": {"name": ns, "labels": labels}})

        self.webhook = ServiceWebhook(self.workdir / "webhook", self.store_url, certs=certs)
        self.webhook.config = self.config
        self.webhook.start()
        self._stack.callback(self._stop_webhook)
        self.api.route_service(SYSTEM_NS, "pulltag-webhook", 443, target_port=self.webhook.port)

        if self.start_kubelet:
            self.kubelet = Kubelet(
                self.api,
                self._resolve_digest,
                nodes=self.nodes,
                version=self.kubelet_version,
                image_id_delay=self.image_id_delay,
                transport=self.kubelet_transport,
                # pods labelled kubelet=manual are run by a test's own kubelet (another version's wording)
                accept=lambda pod: (pod.get("metadata", {}).get("labels") or {}).get("kubelet") != "manual",
            ).start()
            self._stack.callback(self.kubelet.stop)
        if self.start_listener:
            self.start_listener_process()

    def _start_store(self) -> None:
        if self.store_kind == "redis":
            self.redis = RedisServer(self.workdir / "redis", password=self.redis_password).start()
            self._stack.callback(self.redis.stop)
            self.store_url = self.redis.url(0)
        else:
            self.store_url = f"sqlite:///{self.workdir / 'store' / 'pulltag.db'}"

    @property
    def config(self) -> dict[str, Any]:
        if self.proxy is not None:
            key = self.proxy.host
            settings = self.registry.settings("admin", host=key)
            settings = dataclasses.replace(
                settings, credentials=str(self.registry.credentials_file("admin", key=key))
            )
        else:
            settings = self.registry.settings("admin")
        registries = [self._registry_entry(settings)]
        if self.harbor is not None:
            registries.append(self._registry_entry(self.harbor.settings("robot$pulltag")))
        config: dict[str, Any] = {
            "store": {"url": self.store_url, "timeout_seconds": 2},
            "tagging": dict(self.tagging),
            "registries": registries,
            "listener": {"imageid_wait_seconds": 20, **self.listener_config},
        }
        if self.retention:
            config["retention"] = dict(self.retention)
        return config

    @staticmethod
    def _registry_entry(settings: Any) -> dict[str, Any]:
        return {
            "host": settings.host,
            "type": settings.type,
            "credentials": settings.credentials,
            "insecure": settings.insecure,
        }

    def _write_config(self) -> None:
        self.config_path = self.workdir / "pulltag.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start_listener_process(self, name: str = "listener", *, wait_ready: bool = True) -> ManagedProcess:
        token = self.api.add_service_account_token(SYSTEM_NS, "pulltag-listener")
        kubeconfig = self.api.write_kubeconfig(self.workdir / f"{name}.kubeconfig", token=token)
        self.metrics_port = free_port()
        argv = [
            sys.executable, "-m", "pulltag", "listener",
            "--config", str(self.config_path),
            "--metrics-bind", f"127.0.0.1:{self.metrics_port}",
        ]  # fmt: skip
        env = {
            "KUBECONFIG": kubeconfig,
            "POD_NAMESPACE": SYSTEM_NS,
            "POD_NAME": f"{name}-{uuid.uuid4().hex[:5]}",
            "PULLTAG_STORE_URL": "",
            "PULLTAG_CONFIG": "",
        }
        process = ManagedProcess(name, argv, self.workdir / name, env=env).start()
        port = self.metrics_port
        self.metrics_ports[name] = port
        self.listeners[name] = process
        self._stack.callback(process.stop)
        if name == "listener":
            self.listener = process
        if wait_ready:
            process.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=30)
        return process

    def _stop_webhook(self) -> None:
        if self.webhook.process is not None:
            self.webhook.process.stop()

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- images --------------------------------------------------------------------------------------

    def _resolve_digest(self, image: str) -> str | None:
        from pulltag.images import parse_reference

        ref = parse_reference(image)
        if self.harbor is not None and ref.registry == self.harbor.host:
            if ref.digest:
                return ref.digest
            return self.harbor.tag_digest(ref.repository, ref.tag or "latest")
        if self.proxy is not None and ref.registry == self.proxy.host:
            # the node pulls from the registry itself: only pulltag's traffic goes through the proxy
            image = self.registry.host + image[len(self.proxy.host) :]
        return self._resolver(image)

    @property
    def _resolver(self) -> RegistryResolver:
        host = self.registry.host
        resolver: RegistryResolver = getattr(self, "_cached_resolver", None) or RegistryResolver(
            scheme="http",
            credentials=lambda h: ("admin", PASSWORDS["admin"]) if h == host else None,
        )
        self._cached_resolver = resolver
        return resolver

    @property
    def image_host(self) -> str:
        """The registry host in image names: the proxy's when the listener reaches the registry through it."""
        return self.proxy.host if self.proxy is not None else self.registry.host

    def push(self, repository: str, tag: str, kind: Literal["oci", "docker", "index"] = "oci") -> str:
        """Push an image to the real registry (directly); returns `host/repository:tag`."""
        if kind == "index":
            self.registry.push_index(repository, tag)
        else:
            self.registry.push_image(repository, tag, kind=kind)
        self.repositories.add(repository)
        return f"{self.image_host}/{repository}:{tag}"

    def registry_tags(self, repository: str) -> dict[str, str]:
        """Every tag of a repository in the real registry, with its digest."""
        return {t: self.registry.tag_digest(repository, t) or "" for t in self.registry.list_tags(repository)}

    # -- the cluster ---------------------------------------------------------------------------------

    def create_pod(
        self,
        namespace: str,
        containers: dict[str, str],
        *,
        generate_name: str = "web-7d4b9c-",
        name: str | None = None,
        init_containers: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        owner: str | None = "web-7d4b9c",
        dry_run: bool = False,
    ) -> Pod:
        """Create a pod over HTTP as the ReplicaSet controller would, through the admission chain."""
        metadata: dict[str, Any] = {"namespace": namespace, "labels": labels or {"app": "web"}}
        if name:
            metadata["name"] = name
        else:
            metadata["generateName"] = generate_name
        if owner:
            metadata["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": f"rs-{owner}",
                 "controller": True, "blockOwnerDeletion": True}
            ]  # fmt: skip
        spec: dict[str, Any] = {"containers": [{"name": n, "image": i} for n, i in containers.items()]}
        if init_containers:
            spec["initContainers"] = [{"name": n, "image": i} for n, i in init_containers.items()]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
        path = f"/api/v1/namespaces/{namespace}/pods" + ("?dryRun=All" if dry_run else "")
        status, created = self.api_request("POST", path, body)
        if status != 201:
            raise RuntimeError(f"pod create failed: {status} {created}")
        meta = created["metadata"]
        images = {**containers, **(init_containers or {})}
        return Pod(namespace, meta["name"], meta.get("uid", ""), images)

    def create_deployment(
        self, namespace: str, name: str, replicas: int, containers: dict[str, str]
    ) -> list[Pod]:
        return [
            self.create_pod(namespace, containers, generate_name=f"{name}-5c8f7b-", owner=f"{name}-5c8f7b")
            for _ in range(replicas)
        ]

    def api_request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        import requests

        response = requests.request(
            method,
            self.api.url + path,
            json=body,
            headers={"Authorization": f"Bearer {token or self.api.admin_token}"},
            verify=self.api.ca_file,
            timeout=30,
        )
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return response.status_code, payload

    def events(self, reason: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.api.list("events", namespace, field_selector=f"reason={reason}")

    # -- waiting ---------------------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        wait_for(condition, timeout, what, interval=0.1)

    def wait_pods_running(self, pods: Sequence[Pod], timeout: float = 30) -> None:
        def running() -> bool:
            for pod in pods:
                obj = self.api.try_get("pods", pod.name, pod.namespace)
                if obj is None or (obj.get("status") or {}).get("phase") != "Running":
                    return False
            return True

        self.wait_for(running, timeout, "pods to run")

    def metrics(self, listener: str | None = None) -> str:
        port = self.metrics_ports[listener] if listener else self.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, listener: str | None = None, **labels: str) -> float:
        """The value of one sample of the listener's /metrics (0 when absent)."""
        return metric_value(self.metrics(listener), name, **labels)

    def process_logs(self) -> dict[str, str]:
        """The output of every process the world started (webhook, listeners, redis, registry), by file."""
        logs: dict[str, str] = {}
        for path in sorted(self.workdir.rglob("*.log")):
            with contextlib.suppress(OSError):
                logs[str(path.relative_to(self.workdir))] = path.read_text(errors="replace")
        return logs

    def ledger(self) -> list[dict[str, Any]]:
        from pulltag.store import open_store

        store = open_store(self.store_url)
        try:
            return [entry.__dict__ for entry in store.query_ledger(limit=100_000)]
        finally:
            store.close()

    def admissions(self) -> list[Any]:
        from pulltag.store import open_store

        store = open_store(self.store_url)
        try:
            return store.list_admissions(limit=100_000)
        finally:
            store.close()


class ServiceWebhook(WebhookServer):
    """The webhook with the certificates of `certs/generate.sh`: valid for the Service's names only, so
    the harness checks health the way the API server connects (SNI `pulltag-webhook.pulltag-system.svc`)."""

    def healthy(self) -> bool:
        try:
            return https_status(self.port, "/healthz", self.ca_file) == 200
        except OSError:
            return False


def https_status(port: int, path: str, ca_file: Path, server_hostname: str = SERVICE_HOST) -> int:
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
        status_line = tls.recv(64).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(found.get(k, "").strip('"') == v for k, v in labels.items()):
            total += float(value)
    return total


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


@contextlib.contextmanager
def world(workdir: Path, **options: Any) -> Iterator[World]:
    w = World(workdir, **options)
    w.start()
    try:
        yield w
    finally:
        w.stop()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)


def now() -> float:
    return time.time()
