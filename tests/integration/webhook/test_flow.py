"""Realistic AdmissionReviews against `pulltag webhook` (gunicorn, TLS), records in SQLite and Redis."""

from __future__ import annotations

import base64
import copy
import json
import socket
import ssl
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import requests
from hypothesis import given

from pulltag.store import Store
from tests.harness.webhook import DIGEST, SERVICE_HOST, WebhookServer, client_context, pod_review
from tests.integration.webhook.conftest import StartServer
from tests.unit.webhook.fuzz import bodies, fuzz_settings
from tests.unit.webhook.reviews import ephemeral_review
from webhook.patch import apply_patch

MAX_BODY = 4 * 1024 * 1024
POD_UID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
IMAGES = {
    "containers": {
        "app": f"harbor.example.com/shop/web:2.1@{DIGEST}",
        "proxy": "registry.local:5000/infra/envoy:1.30",
        "metrics": "quay.io/prometheus/node-exporter:v1.8.0",
    },
    "initContainers": {"migrate": "harbor.example.com/shop/migrate:2.1"},
    "ephemeralContainers": {"debug": "busybox:1.36"},
}


def deployment_pod(phase: str, **overrides: Any) -> dict[str, Any]:
    """The pod a ReplicaSet creates: generateName only in the mutating phase, name and uid after."""
    common: dict[str, Any] = {
        "namespace": "shop",
        "containers": IMAGES["containers"],
        "init_containers": IMAGES["initContainers"],
        "ephemeral_containers": IMAGES["ephemeralContainers"],
        "owner": ("ReplicaSet", "web-7d4b9c"),
        "generate_name": "web-7d4b9c-",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
    }
    if phase == "mutate":
        common.update(name=None, pod_uid=None, uid="mutate-req")
    else:
        common.update(name="web-7d4b9c-x2x9q", pod_uid=POD_UID, uid="validate-req", node="node-1")
    common.update(overrides)
    return pod_review(**common)


def test_a_deployment_pod_is_annotated_then_recorded(
    start_server: StartServer, store_url: str, store_for: Callable[[str], Store]
) -> None:
    server = start_server(store_url, workers=1)

    mutating = deployment_pod("mutate")
    status, answer = server.post_json("/mutate", mutating)
    assert status == 200
    response = answer["response"]
    assert (answer["apiVersion"], answer["kind"], response["uid"]) == (
        "admission.k8s.io/v1",
        "AdmissionReview",
        "mutate-req",
    )
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patched = apply_patch(mutating["request"]["object"], json.loads(base64.b64decode(response["patch"])))
    assert json.loads(patched["metadata"]["annotations"]["pulltag.dev/images"]) == IMAGES

    validating = deployment_pod("validate")
    validating["request"]["object"]["metadata"]["annotations"] = patched["metadata"]["annotations"]
    status, answer = server.post_json("/validate", validating)
    assert status == 200
    assert answer["response"]["allowed"] is True
    assert answer["response"]["warnings"] == [
        "pulltag: registry quay.io not configured, quay.io/prometheus/node-exporter:v1.8.0 will not be "
        "tagged",
        "pulltag: registry docker.io not configured, busybox:1.36 will not be tagged",
    ]

    record = store_for(store_url).get_admission(POD_UID)
    assert record is not None
    assert (record.namespace, record.name, record.owner, record.node) == (
        "shop",
        "web-7d4b9c-x2x9q",
        "ReplicaSet/web-7d4b9c",
        "node-1",
    )
    assert record.images == IMAGES
    assert record.admitted_at > 0


def test_dry_run_ignored_and_non_pod_requests_write_nothing(
    start_server: StartServer, store_url: str, store_for: Callable[[str], Store]
) -> None:
    server = start_server(store_url, workers=1)
    reviews = [
        deployment_pod("validate", pod_uid="dry", dry_run=True),
        deployment_pod("validate", pod_uid="ignored", labels={"pulltag.dev/ignore": "true"}),
        deployment_pod("validate", pod_uid="update", operation="UPDATE"),
        deployment_pod("validate", pod_uid="v1beta1", api_version="admission.k8s.io/v1beta1"),
    ]
    answers = [server.post_json("/validate", r) for r in reviews]
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert answers[3][1]["apiVersion"] == "admission.k8s.io/v1beta1"
    store = store_for(store_url)
    assert [store.get_admission(uid) is not None for uid in ("dry", "ignored", "update", "v1beta1")] == [
        False,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_kubectl_debug_adds_the_ephemeral_container_to_the_record(
    start_server: StartServer, store_url: str, store_for: Callable[[str], Store], version: str
) -> None:
    server = start_server(store_url, workers=1)
    status, _ = server.post_json("/validate", deployment_pod("validate", ephemeral_containers=None))
    assert status == 200
    store = store_for(store_url)
    created = store.get_admission(POD_UID)
    assert created is not None and "ephemeralContainers" not in created.images

    pod: dict[str, Any] = {
        "uid": "debug-req",
        "api_version": version,
        "name": "web-7d4b9c-x2x9q",
        "namespace": "shop",
        "pod_uid": POD_UID,
        "containers": IMAGES["containers"],
        "init_containers": IMAGES["initContainers"],
        "owner": ("ReplicaSet", "web-7d4b9c"),
        "node": "node-1",
    }
    debug = ephemeral_review(added={"debugger": "harbor.example.com/tools/debug:1"}, **pod)
    status, answer = server.post_json("/mutate", debug)
    assert (status, answer["apiVersion"]) == (200, version)
    assert answer["response"] == {"uid": "debug-req", "allowed": True}  # never a patch on the subresource
    status, answer = server.post_json("/validate", debug)
    assert (status, answer["apiVersion"]) == (200, version)
    assert answer["response"] == {"uid": "debug-req", "allowed": True}  # nothing new to warn about

    record = store.get_admission(POD_UID)
    assert record is not None
    assert record.images == {
        **IMAGES,
        "ephemeralContainers": {"debugger": "harbor.example.com/tools/debug:1"},
    }
    assert (record.namespace, record.name, record.owner, record.node) == (
        "shop",
        "web-7d4b9c-x2x9q",
        "ReplicaSet/web-7d4b9c",
        "node-1",
    )
    assert record.admitted_at >= created.admitted_at
    assert store.find_admission("shop", "web-7d4b9c-x2x9q") == record

    # A dry-run debug and one on an ignored pod leave the record as it is.
    again: dict[str, Any] = {
        "added": {"second": "busybox:1.36"},
        "old_ephemeral": {"debugger": "harbor.example.com/tools/debug:1"},
    }
    for extra in ({"dry_run": True}, {"labels": {"pulltag.dev/ignore": "true"}}):
        status, answer = server.post_json("/validate", ephemeral_review(**again, **pod, **extra))
        assert status == 200 and answer["response"]["allowed"] is True
    assert store.get_admission(POD_UID) == record


def test_tls_trusting_only_the_ca_with_the_service_name(start_server: StartServer) -> None:
    server = start_server(workers=1)
    assert server.peer_certificate(SERVICE_HOST)  # the handshake completes and verifies
    assert server.peer_certificate("pulltag-webhook.pulltag-system.svc.cluster.local")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"):
        server.peer_certificate("pulltag-webhook.other-namespace.svc")
    old = client_context(server.ca_file)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client really offers TLS 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises(ssl.SSLError, match=r"(?i)protocol version|unsupported protocol"),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        old.wrap_socket(raw, server_hostname=SERVICE_HOST),
    ):
        pass


def _raw_request(server: WebhookServer, head: bytes, body_chunks: list[bytes] | None = None) -> bytes:
    context = client_context(server.ca_file)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(head)
        for chunk in body_chunks or []:
            try:
                tls.sendall(chunk)
            except OSError:
                break  # the server answered and closed: what we want to read now
        data = b""
        while b"\r\n\r\n" not in data:
            piece = tls.recv(65536)
            if not piece:
                break
            data += piece
        return data


def test_oversized_bodies_get_413_without_being_read(start_server: StartServer) -> None:
    server = start_server(workers=1)
    # Declared too large: answered from the headers alone, though no body byte was sent.
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000000\r\n\r\n"
    )
    assert _raw_request(server, head).startswith(b"HTTP/1.1 413")
    # Chunked with no length: refused once more than 4 MiB arrived.
    head = (
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    assert _raw_request(server, head, [chunk] * 80).startswith(b"HTTP/1.1 413")


def test_client_errors_over_tls_are_json(start_server: StartServer) -> None:
    server = start_server(workers=1)
    with server.session() as session:
        cases = [
            ("POST", "/validate", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
            ("POST", "/validate", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415),
            ("GET", "/validate", {}, 405),
            ("GET", "/missing", {}, 404),
        ]
        for method, path, kwargs, status in cases:
            resp = session.request(method, server.url(path), timeout=10, **kwargs)
            assert resp.status_code == status
            assert resp.json()["status"] == status


@pytest.mark.hypothesis  # its @given is inside: `make explore` selects it by this mark
def test_generated_bodies_over_real_tls_never_give_a_5xx(start_server: StartServer) -> None:
    server = start_server(workers=2)
    session = server.session()

    @fuzz_settings(300)
    @given(body=bodies)
    def check(body: bytes) -> None:
        try:
            resp = session.post(
                server.url("/validate" if len(body) % 2 else "/mutate"),
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
        except requests.ConnectionError:
            # Over the limit the server answers 413 from the headers and closes; a client still sending
            # the rest of a body that large may see the close before it reads the answer.
            assert len(body) > MAX_BODY
            return
        assert resp.status_code in (200, 400, 413), (resp.status_code, body[:200])
        assert (resp.status_code == 413) == (len(body) > MAX_BODY)
        assert isinstance(resp.json(), dict)

    try:
        check()
    finally:
        session.close()
    assert "Traceback" not in server.log_text()


def test_readiness_does_not_depend_on_the_store(start_server: StartServer) -> None:
    # Nothing listens on port 1: the store is unreachable, yet the webhook serves and is ready.
    server = start_server("redis://127.0.0.1:1/0", workers=1)
    assert server.get("/readyz") == (200, b'{"status":"ready"}')
    status, answer = server.post_json("/validate", copy.deepcopy(deployment_pod("validate")))
    assert status == 200 and answer["response"]["allowed"] is True
