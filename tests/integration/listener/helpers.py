"""Test helpers: build settings and listeners, make pods that ran, post kubelet events, wait."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from listener.kube import KubeClient, load_config
from listener.main import Listener
from listener.metrics import ListenerMetrics
from pulltag.config import ListenerSettings, Settings, StoreSettings, TaggingSettings
from pulltag.store import LedgerEntry, Store, open_store
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.registry import RegistryServer

Obj = dict[str, Any]
ANNOTATION = "pulltag.dev/images"


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `condition` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


# Timings shrunk for tests; production defaults otherwise. The catch-up pass is off unless asked for,
# so that event-path tests cannot pass thanks to it.
FAST: dict[str, Any] = {
    "workers": 4,
    "imageid_wait_seconds": 10.0,
    "rate_limit_per_second": 500.0,
    "watch_read_timeout_seconds": 3.0,
    "watch_backoff_initial_seconds": 0.05,
    "watch_backoff_max_seconds": 1.0,
    "watch_healthy_stream_seconds": 0.5,
    "tag_retry_initial_seconds": 0.05,
    "tag_retry_max_seconds": 0.3,
    "confirm_retry_initial_seconds": 0.05,
    "confirm_retry_max_seconds": 0.3,
    "api_patience_seconds": 60.0,
    "catch_up": False,
}


def now_rfc3339(offset: float = 0.0) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class RunningListener:
    def __init__(self, listener: Listener, store: Store) -> None:
        self.listener = listener
        self.store = store
        self.metrics = listener.metrics

    def pulls(self, outcome: str) -> float:
        return self.metrics.value("pulltag_pulls_total", {"outcome": outcome})

    def tags(self, outcome: str, registry: str) -> float:
        return self.metrics.value("pulltag_tags_total", {"registry": registry, "outcome": outcome})

    def stop(self) -> None:
        self.listener.stop(5.0)
        self.store.close()


class Env:
    """One test's world: fake API server, registry, store URL, and the listeners it started."""

    def __init__(
        self, api: FakeKubeAPI, kubeconfig: str, registry: RegistryServer, redis_url: str, tmp: Path
    ) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.registry = registry
        self.redis_url = redis_url
        self.sqlite_url = f"sqlite:///{tmp / 'pulltag.db'}"
        self.listeners: list[RunningListener] = []
        self.namespace = "apps"
        if api.try_get("namespaces", self.namespace) is None:
            api.create("namespaces", {"metadata": {"name": self.namespace}})

    # --- configuration ---------------------------------------------------------------------------

    def settings(
        self, store_url: str | None = None, tagging: TaggingSettings | None = None, **listener: Any
    ) -> Settings:
        values = {**FAST, **listener}
        return Settings(
            store=StoreSettings(url=store_url or self.redis_url),
            tagging=tagging or TaggingSettings(),
            registries=(self.registry.settings(None),),
            listener=ListenerSettings(**values),
        )

    def kube(self) -> KubeClient:
        return KubeClient(load_config(self.kubeconfig))

    def start_listener(self, settings: Settings | None = None) -> RunningListener:
        settings = settings or self.settings()
        store = open_store(settings.store.url)
        listener = Listener(settings, self.kube(), store, ListenerMetrics())
        listener.start()
        running = RunningListener(listener, store)
        self.listeners.append(running)
        return running

    def open_store(self, url: str | None = None) -> Store:
        return open_store(url or self.redis_url)

    def close(self) -> None:
        for running in self.listeners:
            running.stop()

    # --- the registry ------------------------------------------------------------------------------

    def image(self, tag: str = "v1") -> tuple[str, str, str]:
        """A new repository with one image: (repository, digest, image reference)."""
        repository = self.registry.new_repository("team/app")
        digest = self.registry.seed_image(repository, tag)
        return repository, digest, f"{self.registry.host}/{repository}:{tag}"

    def tags_on(self, repository: str, digest: str, prefix: str = "deployed_") -> list[str]:
        return sorted(
            t
            for t in self.registry.list_tags(repository)
            if t.startswith(prefix) and self.registry.tag_digest(repository, t) == digest
        )

    def prefixed_tags(self, repository: str, prefix: str = "deployed_") -> list[str]:
        return sorted(t for t in self.registry.list_tags(repository) if t.startswith(prefix))

    # --- pods and events -----------------------------------------------------------------------------

    def pod(
        self,
        name: str,
        image: str,
        *,
        annotate: bool = True,
        container: str = "app",
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Obj:
        """Create an admitted pod (annotation `pulltag.dev/images`), scheduled on node-1."""
        metadata: Obj = {"name": name, "namespace": namespace or self.namespace, "labels": labels or {}}
        if annotate:
            metadata["annotations"] = {ANNOTATION: json.dumps({"containers": {container: image}})}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"nodeName": "node-1", "containers": [{"name": container, "image": image}]},
        }
        return self.api.create("pods", body, namespace or self.namespace)

    def run(self, pod: Obj, digest: str, *, container: str = "app", started: str | None = None) -> Obj:
        """Write the status a kubelet writes once the container runs (imageID with the digest)."""
        image = pod["spec"]["containers"][0]["image"]
        repo = image.rsplit(":", 1)[0] if "@" not in image else image.split("@", 1)[0]
        fresh = self.api.get("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
        fresh["status"] = {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": f"{repo}@{digest}",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": started or now_rfc3339()}},
                }
            ],
        }
        return self.api.update_status("pods", fresh, pod["metadata"]["namespace"])

    def pulled(
        self,
        pod: Obj,
        *,
        container: str = "app",
        message: str | None = None,
        component: str = "kubelet",
        when: str | None = None,
    ) -> Obj:
        """Post a kubelet-shaped Pulled event for the pod's container."""
        image = pod["spec"]["containers"][0]["image"]
        meta = pod["metadata"]
        stamp = when or now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "fieldPath": f"spec.containers{{{container}}}",
            },
            "reason": "Pulled",
            "message": message or f'Successfully pulled image "{image}" in 1.2s (1.3s including waiting)',
            "source": {"component": component, "host": "node-1"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": "Normal",
            "reportingComponent": component,
            "reportingInstance": "node-1",
        }
        return self.api.create("events", event, meta["namespace"])

    def pod_events(self, reason: str, namespace: str | None = None) -> list[Obj]:
        return [e for e in self.api.list("events", namespace or self.namespace) if e.get("reason") == reason]

    def ledger(
        self, image: str | None = None, digest: str | None = None, url: str | None = None
    ) -> list[LedgerEntry]:
        store = self.open_store(url)
        try:
            return store.query_ledger(image=image, digest=digest, limit=100_000)
        finally:
            store.close()
