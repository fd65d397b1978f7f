"""A fresh install of the default manifests/ (self-managed certificates) in the test world: the fake API
server with the rendered RBAC and WebhookConfigurations (no caBundle, no Secret), the certificate manager
of listener/certificates.py authenticated as the listener's ServiceAccount, two webhook replicas (real
gunicorn over TLS) each reading its own projection of the Secret (tests/integration/certs/secret_volume),
their EndpointSlices, a real Redis, and a stream of pods created through the admission chain."""

from __future__ import annotations

import base64
import itertools
import socket
import ssl
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from listener.certificates import CertificateManager, CertificatePolicy
from listener.kube import KubeClient, KubeConfig
from pulltag.store import Store, open_store
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.procs import ManagedProcess, free_port, wait_for
from tests.harness.redis import RedisServer
from tests.harness.webhook import WebhookServer
from tests.harness.world import LOADED_KINDS, https_status
from tests.integration.certs.secret_volume import SecretVolume
from tests.unit.manifests.render import MANIFESTS, kustomize

NS = "pulltag-system"
SERVICE = "pulltag-webhook"
HOST = f"{SERVICE}.{NS}.svc"
SECRET = "pulltag-webhook-tls"
CONFIGS = (
    ("mutatingwebhookconfigurations", "annotate.pulltag.dev"),
    ("validatingwebhookconfigurations", "record.pulltag.dev"),
)
LISTENER_USER = f"system:serviceaccount:{NS}:pulltag-listener"


class ServiceWebhook(WebhookServer):
    """The webhook with a certificate for the Service's names only (as the manager makes it)."""

    def healthy(self) -> bool:
        try:
            return https_status(self.port, "/healthz", self.ca_file, server_hostname=HOST) == 200
        except OSError:
            return False


def served_certificate(port: int) -> x509.Certificate:
    """The certificate a new connection to 127.0.0.1:port is served (not verified: only looked at)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@dataclass(eq=False)
class Replica:
    index: int
    api: FakeKubeAPI
    workdir: Path
    store_url: str
    volume: SecretVolume = field(init=False)
    webhook: ServiceWebhook = field(init=False)

    def __post_init__(self) -> None:
        # Refreshed every 0.5 s: long enough for many admission calls in each phase of a rotation.
        self.volume = SecretVolume(self.api, NS, SECRET, self.workdir / "tls", period=0.5)
        self.webhook = ServiceWebhook(
            self.workdir / "webhook",
            self.store_url,
            workers=1,
            threads=4,
            cert_reload_seconds=0.1,
            certs=self.volume.directory,
            port=free_port(),
        )

    @property
    def port(self) -> int:
        return self.webhook.port

    def start(self) -> None:
        # kubelet starts the container once the Secret exists (its volume cannot be mounted before).
        wait_for(lambda: self._synced(), 30, f"the Secret projected for replica {self.index}")
        self.volume.start()
        self.webhook.start(timeout=30)

    def _synced(self) -> bool:
        self.volume.sync()
        return bool(self.volume.projected_version)

    def serves(self) -> x509.Certificate:
        return served_certificate(self.port)

    def stop(self) -> None:
        self.volume.stop()
        self.webhook.stop()


class PodStream:
    """Pods created one after another through the admission chain, on a thread, until stopped."""

    def __init__(self, api: FakeKubeAPI, namespace: str = "shop") -> None:
        self.api = api
        self.namespace = namespace
        self.created: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-stream", daemon=True)
        self._names = (f"rot-{n}" for n in itertools.count())

    def start(self) -> PodStream:
        self._thread.start()
        return self

    def create_one(self) -> dict[str, Any]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": next(self._names), "namespace": self.namespace},
            "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:1.0"}]},
        }
        created = self.api.create("pods", pod, self.namespace, admit=True)
        self.created.append(created)
        return created

    def count(self) -> int:
        return len(self.created)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.create_one()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(30)
        return list(self.created)


class CertWorld:
    """`process=True`: the manager runs in a real `pulltag listener --manage-webhook-certificates` (with
    leader election), as the rendered Deployment runs it; else in this process (tests that restart it)."""

    def __init__(self, workdir: Path, *, process: bool = False) -> None:
        self.workdir = workdir
        self.process = process
        self.listener: ManagedProcess | None = None
        self.redis = RedisServer(workdir / "redis").start()
        self.store_url = f"redis://127.0.0.1:{self.redis.port}/0"
        self.api = FakeKubeAPI().start()
        self.rendered = kustomize(MANIFESTS)
        self.api.load_manifests([o for o in self.rendered if o["kind"] in LOADED_KINDS])
        self.api.create("namespaces", {"metadata": {"name": "shop"}})
        self.token = self.api.add_service_account_token(NS, "pulltag-listener")
        self.policy = CertificatePolicy(namespace=NS, interval_seconds=0.1, probe_timeout_seconds=2.0)
        self.manager = self.new_manager()
        self.replicas = [Replica(i, self.api, workdir / f"replica-{i}", self.store_url) for i in range(2)]
        self.ready: set[int] = set()
        self.store: Store = open_store(self.store_url)

    def new_manager(self) -> CertificateManager:
        token = self.token
        config = KubeConfig(host=self.api.url, verify=self.api.ca_file, auth_header=lambda: f"Bearer {token}")
        return CertificateManager(KubeClient(config), self.policy)

    # --- the cluster's side ------------------------------------------------------------------------

    def install(self) -> None:
        """Everything a `kubectl apply -k manifests/` starts, in the order the cluster would."""
        if self.process:
            self.listener = self._start_listener()
        else:
            self.manager.start()
        for replica in self.replicas:
            replica.start()
            self.set_ready(replica, True)

    def _start_listener(self) -> ManagedProcess:
        (deployment,) = [
            o
            for o in self.rendered
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "pulltag-listener"
        ]
        flags = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--manage-webhook-certificates" in flags  # what the default install runs
        kubeconfig = self.api.write_kubeconfig(self.workdir / "listener.kubeconfig", token=self.token)
        config = self.workdir / "listener.yaml"
        config.write_text(f"store:\n  url: {self.store_url}\n", encoding="utf-8")
        argv = [
            sys.executable, "-m", "pulltag", "listener", "--config", str(config),
            "--metrics-bind", f"127.0.0.1:{free_port()}", "--namespace", NS, "--manage-webhook-certificates",
        ]  # fmt: skip
        env = {"KUBECONFIG": kubeconfig, "POD_NAMESPACE": NS, "PULLTAG_STORE_URL": "", "PULLTAG_CONFIG": ""}
        return ManagedProcess("listener", argv, self.workdir / "listener", env=env).start()

    def set_ready(self, replica: Replica, ready: bool) -> None:
        """The replica's EndpointSlice (as the endpoints controller keeps it) and the Service's routing."""
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-{replica.index}",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
            "ports": [{"name": "https", "port": replica.port, "protocol": "TCP"}],
        }
        if self.api.try_get("endpointslices", slice_["metadata"]["name"], NS) is None:
            self.api.create("endpointslices", slice_, NS)
        else:
            self.api.update("endpointslices", slice_, NS)
        (self.ready.add if ready else self.ready.discard)(replica.index)
        endpoints = [("127.0.0.1", r.port) for r in self.replicas if r.index in self.ready]
        self.api.route_service_endpoints(NS, SERVICE, 443, endpoints)

    def stop(self) -> None:
        self.manager.stop()
        if self.listener is not None:
            self.listener.stop()
        for replica in self.replicas:
            replica.stop()
        self.store.close()
        self.api.close()
        self.redis.stop()

    # --- what the tests look at ----------------------------------------------------------------------

    def secret(self) -> dict[str, Any]:
        return self.api.get("secrets", SECRET, NS)

    def trusted(self) -> list[x509.Certificate]:
        data = self.secret()["data"]["ca.crt"]
        return x509.load_pem_x509_certificates(base64.b64decode(data))

    def ca_bundles(self) -> list[bytes]:
        """The caBundle of each webhook of both configurations, as stored (what admission verifies with)."""
        return [
            base64.b64decode((wh.get("clientConfig") or {}).get("caBundle") or "")
            for resource, name in CONFIGS
            for wh in self.api.get(resource, name)["webhooks"]
        ]

    def annotate(self, value: str) -> None:
        """Force a rotation the documented way: `kubectl annotate secret ... pulltag.dev/rotate=<value>`."""
        patch = {"metadata": {"annotations": {"pulltag.dev/rotate": value}}}
        self.api.patch("secrets", SECRET, patch, NS, patch_type="merge")

    def unrecorded(self, pods: list[dict[str, Any]]) -> list[str]:
        """The pods without their admission record (validating webhook) or annotation (mutating)."""
        missing = []
        for pod in pods:
            meta = pod["metadata"]
            annotated = "pulltag.dev/images" in (meta.get("annotations") or {})
            if not annotated or self.store.get_admission(meta["uid"]) is None:
                missing.append(meta["name"])
        return missing

    def listener_denials(self) -> list[Any]:
        return [r for r in self.api.request_log if r[2] == LISTENER_USER and r[3] == 403]
