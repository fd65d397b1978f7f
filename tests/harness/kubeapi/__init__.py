"""A fake Kubernetes API server for pulltag's tests (the one fake of the test world).

HTTPS with bearer tokens; namespaces, pods (+ ``pods/status``, ``pods/ephemeralcontainers``), core/v1
and events.k8s.io/v1 events (one store), coordination.k8s.io/v1 leases, secrets, discovery.k8s.io/v1
endpointslices and the two admission webhook configuration kinds (stored objects that the admission
chain follows); real list/watch semantics (one global resourceVersion, paging, selectors, bookmarks, 410
after compaction, event TTL); admission webhooks called like kube-apiserver (TLS verified against the
stored caBundle); RBAC from manifests; fault injection. See ``FakeKubeAPI``.
"""

from .certs import IssuedCert, TestCA, api_server_bundle
from .errors import ApiError
from .rbac import User
from .server import FakeKubeAPI, RequestRecord

__all__ = ["ApiError", "FakeKubeAPI", "IssuedCert", "RequestRecord", "TestCA", "User", "api_server_bundle"]
