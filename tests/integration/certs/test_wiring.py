"""The listener's wiring of the certificate manager (listener.main runs `with_certificates` around each
leadership term), and the endpoints it probes: only ready ones, only IP addresses and valid ports (cluster
input, it reaches a socket)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from listener.certificates import CertificatePolicy, with_certificates
from listener.endpoint_probe import endpoints
from listener.kube import KubeClient, KubeConfig
from tests.harness.kubeapi import FakeKubeAPI
from tests.harness.procs import wait_for

NS = "pulltag-system"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as server:
        server.create("namespaces", {"metadata": {"name": NS}})
        yield server


def _kube(api: FakeKubeAPI) -> KubeClient:
    token = api.admin_token
    return KubeClient(KubeConfig(host=api.url, verify=api.ca_file, auth_header=lambda: f"Bearer {token}"))


def test_without_the_flag_a_term_is_the_listener_alone(api: FakeKubeAPI) -> None:
    def start() -> None: ...

    def stop() -> None: ...

    args = argparse.Namespace(manage_webhook_certificates=False, namespace=NS)
    assert with_certificates(args, _kube(api), start, stop) == (start, stop)


def test_with_the_flag_a_term_also_keeps_the_certificates(api: FakeKubeAPI) -> None:
    calls: list[str] = []
    args = argparse.Namespace(manage_webhook_certificates=True, namespace=NS)
    start, stop = with_certificates(
        args, _kube(api), lambda: calls.append("start"), lambda: calls.append("stop")
    )
    assert api.try_get("secrets", "pulltag-webhook-tls", NS) is None
    start()
    try:
        wait_for(lambda: api.try_get("secrets", "pulltag-webhook-tls", NS) is not None, 10, "the Secret")
    finally:
        stop()
    assert calls == ["start", "stop"]
    assert set(api.get("secrets", "pulltag-webhook-tls", NS)["data"]) == {
        "tls.crt",
        "tls.key",
        "ca.crt",
        "ca.key",
    }


def test_only_ready_ip_endpoints_with_valid_ports_are_probed(api: FakeKubeAPI) -> None:
    def slice_(
        name: str, endpoints_: list[dict[str, object]], port: object, service: str = "pulltag-webhook"
    ) -> None:
        api.create(
            "endpointslices",
            {
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "endpoints": endpoints_,
                "ports": [{"name": "https", "port": port}],
            },
            NS,
        )

    ready = {"ready": True}
    slice_(
        "a",
        [
            {"addresses": ["10.0.0.1"], "conditions": ready},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
        ],
        8443,
    )
    slice_("b", [{"addresses": ["evil.example.com", "fd00::1"], "conditions": ready}], 8443)
    slice_("c", [{"addresses": ["10.0.0.3"]}], 70000)
    slice_("d", [{"addresses": ["10.0.0.4"]}], True)
    slice_("e", [{"addresses": ["10.0.0.5"]}], 8443, service="someone-else")
    found = sorted(endpoints(_kube(api), CertificatePolicy(namespace=NS)))
    assert found == [("10.0.0.1", 8443), ("fd00::1", 8443)]
