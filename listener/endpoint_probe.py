"""Is every replica of the webhook serving the new certificate? The certificate manager
(listener/certificates.py) asks before it drops an old CA from the caBundles: each ready endpoint of the
webhook Service (its EndpointSlices) must complete a TLS handshake for the Service's name trusting only
the new CA, which is what the API server will check once the old CA is gone."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Protocol
from urllib.parse import quote

from cryptography import x509

from listener.kube import KubeClient
from pulltag.certs import pem_cert

log = logging.getLogger(__name__)


class ProbeTarget(Protocol):
    """What a probe needs of the certificate policy."""

    @property
    def namespace(self) -> str: ...

    @property
    def service(self) -> str: ...

    @property
    def server_name(self) -> str: ...

    @property
    def probe_timeout_seconds(self) -> float: ...


def endpoints(kube: KubeClient, policy: ProbeTarget) -> Iterator[tuple[str, int]]:
    """(address, port) of every ready endpoint of the webhook Service, from its EndpointSlices. Cluster
    input: an address that is not an IP or a port out of range is skipped."""
    ns = quote(policy.namespace, safe="")
    path = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    params = {"labelSelector": f"kubernetes.io/service-name={policy.service}"}
    for page in kube.list_pages(path, params):
        for slice_ in page.get("items") or []:
            ports = [p.get("port") for p in slice_.get("ports") or []]
            for endpoint in slice_.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                for address in endpoint.get("addresses") or []:
                    for port in ports:
                        if _valid_endpoint(address, port):
                            yield str(address), int(port)


def _valid_endpoint(address: object, port: object) -> bool:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return False
    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        return False
    return True


def serves_current(address: str, port: int, ca: x509.Certificate, policy: ProbeTarget) -> bool:
    """A TLS handshake with this endpoint succeeds trusting only `ca`, for the name the API server checks."""
    context = ssl.create_default_context(cadata=pem_cert(ca).decode())
    try:
        with (
            socket.create_connection((address, port), timeout=policy.probe_timeout_seconds) as raw,
            context.wrap_socket(raw, server_hostname=policy.server_name),
        ):
            return True
    except (OSError, ssl.SSLError) as exc:
        log.info("webhook endpoint %s:%d does not serve the new certificate yet: %s", address, port, exc)
        return False


Prober = Callable[[str, int, x509.Certificate, ProbeTarget], bool]


def every_replica_serves(kube: KubeClient, policy: ProbeTarget, ca: x509.Certificate, probe: Prober) -> bool:
    found = list(endpoints(kube, policy))
    if not found:
        log.info("no ready endpoint of the webhook Service: the old CA stays trusted")
        return False
    return all(probe(address, port, ca, policy) for address, port in found)
