"""Launch `pulltag webhook` (gunicorn over TLS) on a free loopback port, with certificates from
`pulltag.certs` (extra SANs `localhost` and `127.0.0.1`), and wait until /healthz answers over TLS."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from pulltag.certs import generate
from tests.harness.procs import ManagedProcess, free_port, wait_for

SERVICE_HOST = "pulltag-webhook.pulltag-system.svc"
DIGEST = "sha256:" + "ab" * 32


def pod_review(
    *,
    uid: str = "req-1",
    api_version: str = "admission.k8s.io/v1",
    operation: str = "CREATE",
    name: str | None = "web-7d4b9c-x2x9q",
    generate_name: str | None = None,
    namespace: str = "shop",
    pod_uid: str | None = "5f0c2e8a-1111-4c4c-9d9d-000000000001",
    containers: dict[str, str] | None = None,
    init_containers: dict[str, str] | None = None,
    ephemeral_containers: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    node: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """An AdmissionReview for a pod CREATE, shaped like the API server's (v1 or v1beta1).

    For the mutating phase of a Deployment's pod pass `name=None, generate_name="web-7d4b9c-", pod_uid=None`:
    the API server resolves generateName and sets the uid only after mutating admission.
    """
    metadata: dict[str, Any] = {"namespace": namespace}
    if name is not None:
        metadata["name"] = name
    if generate_name is not None:
        metadata["generateName"] = generate_name
    if pod_uid is not None:
        metadata["uid"] = pod_uid
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    if owner is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "rs-uid",
             "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
    spec: dict[str, Any] = {
        "containers": [{"name": n, "image": i} for n, i in (containers or {"app": "nginx:1.27"}).items()]
    }
    if init_containers:
        spec["initContainers"] = [{"name": n, "image": i} for n, i in init_containers.items()]
    if ephemeral_containers:
        spec["ephemeralContainers"] = [{"name": n, "image": i} for n, i in ephemeral_containers.items()]
    if node is not None:
        spec["nodeName"] = node
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec},
        "oldObject": None,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if name is not None:
        request["name"] = name
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def make_certs(folder: Path, **kwargs: Any) -> Path:
    """CA + serving certificate for the webhook Service, also valid for localhost / 127.0.0.1."""
    generate(folder, extra_sans=["localhost", "127.0.0.1"], **kwargs)
    return folder


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client that trusts only our CA (and checks host names, as the API server does)."""
    return ssl.create_default_context(cafile=str(ca_file))


@dataclass(eq=False)
class WebhookServer:
    workdir: Path
    store_url: str
    workers: int = 2
    threads: int = 4
    cert_reload_seconds: float = 10.0
    config: dict[str, Any] = field(default_factory=dict)
    certs: Path | None = None  # a folder with tls.crt / tls.key / ca.crt; generated if None
    log_format: str = "text"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def cert_dir(self) -> Path:
        assert self.certs is not None
        return self.certs

    @property
    def ca_file(self) -> Path:
        return self.cert_dir / "ca.crt"

    def url(self, path: str = "/") -> str:
        return f"https://localhost:{self.port}{path}"

    def start(self, timeout: float = 20.0) -> WebhookServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.certs is None:
            self.certs = make_certs(self.workdir / "certs")
        if not self.port:
            self.port = free_port()
        config_path = self.workdir / "pulltag.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        argv = [
            sys.executable, "-m", "pulltag", "webhook",
            "--config", str(config_path),
            "--bind", f"127.0.0.1:{self.port}",
            "--certfile", str(self.cert_dir / "tls.crt"),
            "--keyfile", str(self.cert_dir / "tls.key"),
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--cert-reload-seconds", str(self.cert_reload_seconds),
            "--log-format", self.log_format,
        ]  # fmt: skip
        env = {"PULLTAG_STORE_URL": self.store_url, "PULLTAG_CONFIG": "", **self.extra_env}
        self.process = ManagedProcess("webhook", argv, self.workdir, env=env).start()
        self.process.wait_ready(self.healthy, timeout=timeout)
        return self

    def healthy(self) -> bool:
        try:
            status, _ = self.get("/healthz", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def session(self) -> requests.Session:
        """A keep-alive HTTPS session trusting only our CA (environment CA bundles and proxies ignored)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_file)
        return session

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """One GET on a fresh TLS connection."""
        context = client_context(self.ca_file)
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout, context=context) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), bytes(err.read())

    def post_json(self, path: str, payload: Any, timeout: float = 5.0) -> tuple[int, Any]:
        context = client_context(self.ca_file)
        request = urllib.request.Request(
            self.url(path), data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read())

    def peer_certificate(self, server_hostname: str = SERVICE_HOST, ca_file: Path | None = None) -> bytes:
        """The DER certificate served on a new connection, verified against the CA for that host name."""
        context = client_context(ca_file or self.ca_file)
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def log_text(self) -> str:
        assert self.process is not None
        try:
            return self.process.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> None:
        wait_for(lambda: needle in self.log_text(), timeout, f"{needle!r} in the webhook log")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        return self.process.stop(timeout=timeout)
