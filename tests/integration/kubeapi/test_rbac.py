"""Authentication and RBAC: tokens, grants from manifests, the real Forbidden message shape."""

from __future__ import annotations

import json

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.harness.kubeapi import FakeKubeAPI

from ._util import Raw, WatchReader, pod

RBAC_YAML = """
apiVersion: v1
kind: Namespace
metadata: {name: pulltag-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: pulltag-listener, namespace: pulltag-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pulltag-listener}
rules:
  - apiGroups: [""]
    resources: [events]
    verbs: [list, watch]
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
  - apiGroups: ["", events.k8s.io]
    resources: [events]
    verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: pulltag-listener}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pulltag-listener}
subjects:
  - {kind: ServiceAccount, name: pulltag-listener, namespace: pulltag-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leader-election, namespace: pulltag-system}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, update]
    resourceNames: [pulltag-listener]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leader-election, namespace: pulltag-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leader-election}
subjects:
  - {kind: ServiceAccount, name: pulltag-listener}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: status-writer, namespace: apps}
rules:
  - apiGroups: [""]
    resources: [pods/status]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: status-writer, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: status-writer}
subjects:
  - {kind: Group, name: "system:serviceaccounts:kubelets"}
"""

SA = "system:serviceaccount:pulltag-system:pulltag-listener"


@pytest.fixture
def listener(kubeapi: FakeKubeAPI) -> Raw:
    loaded = kubeapi.load_manifests(RBAC_YAML)
    assert ("ClusterRoleBinding", "", "pulltag-listener") in loaded
    assert [m["kind"] for m in kubeapi.ignored_manifests] == ["ServiceAccount"]
    kubeapi.create("pods", pod("a", "apps"))
    return Raw(kubeapi, kubeapi.add_service_account_token("pulltag-system", "pulltag-listener"))


def forbidden(resp) -> str:
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["reason"] == "Forbidden" and body["code"] == 403
    return str(body["message"])


def test_no_or_unknown_token_is_401(kubeapi: FakeKubeAPI):
    r = Raw(kubeapi, "not-a-token")("GET", "/api/v1/pods")
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    r = Raw(kubeapi)
    r.session.headers.pop("Authorization")
    assert r("GET", "/api/v1/pods").status_code == 401
    assert kubeapi.request_log[-1][2:] == ("", 401)


def test_cluster_role_binding_grants_exactly_its_rules(kubeapi: FakeKubeAPI, listener: Raw):
    assert listener("GET", "/api/v1/events").status_code == 200
    assert listener("GET", "/api/v1/namespaces/apps/pods").status_code == 200
    assert listener("GET", "/api/v1/namespaces/apps/pods/a").status_code == 200
    w = WatchReader(
        kubeapi,
        "/api/v1/events?watch=1&timeoutSeconds=1",
        token=listener.session.headers["Authorization"].split()[1],
    )
    assert w.status == 200
    w.close()
    ev = {
        "metadata": {"name": "e", "namespace": "apps"},
        "involvedObject": {"kind": "Pod", "name": "a", "namespace": "apps"},
        "reason": "ImageTagged",
        "message": "m",
        "type": "Normal",
    }
    assert listener("POST", "/api/v1/namespaces/apps/events", ev).status_code == 201
    r = listener(
        "PATCH",
        "/api/v1/namespaces/apps/events/e",
        {"message": "n"},
        content_type="application/merge-patch+json",
    )
    assert r.status_code == 200

    assert forbidden(listener("GET", "/api/v1/namespaces/apps/events/e")) == (
        f'events "e" is forbidden: User "{SA}" cannot get resource "events" in API group "" '
        'in the namespace "apps"'
    )
    assert forbidden(listener("GET", "/api/v1/namespaces")) == (
        f'namespaces is forbidden: User "{SA}" cannot list resource "namespaces" in API group "" '
        "at the cluster scope"
    )
    assert forbidden(listener("DELETE", "/api/v1/namespaces/apps/pods/a")).startswith('pods "a" is forbidden')
    assert forbidden(listener("POST", "/api/v1/namespaces/apps/pods", pod("b", "apps"))) == (
        f'pods is forbidden: User "{SA}" cannot create resource "pods" in API group "" '
        'in the namespace "apps"'
    )
    body = listener("GET", "/api/v1/namespaces/apps/events/e").json()
    assert body["details"] == {"name": "e", "kind": "events"}
    assert kubeapi.request_log[-1] == ("GET", "/api/v1/namespaces/apps/events/e", SA, 403)


def test_role_binding_is_namespaced_and_honours_resource_names(kubeapi: FakeKubeAPI, listener: Raw):
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "pulltag-listener"},
        "spec": {"holderIdentity": "me"},
    }
    path = "/apis/coordination.k8s.io/v1/namespaces/pulltag-system/leases"
    assert listener("POST", path, lease).status_code == 201
    got = listener("GET", f"{path}/pulltag-listener")
    assert got.status_code == 200
    assert listener("PUT", f"{path}/pulltag-listener", got.json()).status_code == 200
    assert forbidden(listener("GET", f"{path}/other")) == (
        f'leases.coordination.k8s.io "other" is forbidden: User "{SA}" cannot get resource "leases" '
        'in API group "coordination.k8s.io" in the namespace "pulltag-system"'
    )
    assert listener("GET", path).status_code == 403  # list: no resourceNames match
    other_ns = "/apis/coordination.k8s.io/v1/namespaces/apps/leases"
    assert listener("POST", other_ns, lease).status_code == 403
    details = listener("GET", f"{path}/other").json()["details"]
    assert details == {"name": "other", "group": "coordination.k8s.io", "kind": "leases"}


def test_subresource_grants(kubeapi: FakeKubeAPI, listener: Raw):
    kubelet = Raw(kubeapi, kubeapi.add_service_account_token("kubelets", "node-1"))
    status = {"status": {"phase": "Running"}}
    r = kubelet(
        "PATCH",
        "/api/v1/namespaces/apps/pods/a/status",
        status,
        content_type="application/strategic-merge-patch+json",
    )
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Running"
    msg = forbidden(
        kubelet(
            "PATCH",
            "/api/v1/namespaces/apps/pods/a",
            status,
            content_type="application/strategic-merge-patch+json",
        )
    )
    assert 'cannot patch resource "pods" in API group ""' in msg
    msg = forbidden(
        listener(
            "PATCH",
            "/api/v1/namespaces/apps/pods/a/status",
            status,
            content_type="application/strategic-merge-patch+json",
        )
    )
    assert 'cannot patch resource "pods/status" in API group "" in the namespace "apps"' in msg


def test_admin_token_bypasses_rbac_and_client_sees_403(kubeapi: FakeKubeAPI, listener: Raw, tmp_path):
    assert Raw(kubeapi)("DELETE", "/api/v1/namespaces/apps/pods/a").status_code == 200
    token = kubeapi.add_service_account_token("pulltag-system", "pulltag-listener")
    path = kubeapi.write_kubeconfig(tmp_path / "sa.kubeconfig", token=token)
    cfg = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=cfg)
    core = client.CoreV1Api(client.ApiClient(cfg))
    assert core.list_pod_for_all_namespaces().items == []
    with pytest.raises(ApiException) as ei:
        core.list_namespace()
    assert ei.value.status == 403
    assert json.loads(ei.value.body)["message"].startswith("namespaces is forbidden")


def test_aggregated_cluster_roles_and_user_tokens(kubeapi: FakeKubeAPI):
    kubeapi.load_manifests(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "agg"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "part", "labels": {"x": "y"}},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "b"},
                "roleRef": {"kind": "ClusterRole", "name": "agg"},
                "subjects": [{"kind": "User", "name": "alice"}],
            },
        ]
    )
    alice = Raw(kubeapi, kubeapi.add_token("alice"))
    assert alice("GET", "/api/v1/namespaces/default").status_code == 200
    assert alice("GET", "/api/v1/namespaces").status_code == 403


def test_certificate_manager_grants_exactly_its_calls(kubeapi: FakeKubeAPI) -> None:
    """The self-managed certificates' RBAC, as rendered from manifests/: the manager's calls (the one
    Secret, the webhook Service's EndpointSlices, the two WebhookConfigurations) are allowed, their
    neighbours are not (tests/integration/certs runs the manager itself and finds no 403)."""
    from tests.harness.world import LOADED_KINDS
    from tests.unit.manifests.render import MANIFESTS, kustomize

    kubeapi.load_manifests([o for o in kustomize(MANIFESTS) if o["kind"] in LOADED_KINDS])
    manager = Raw(kubeapi, kubeapi.add_service_account_token("pulltag-system", "pulltag-listener"))
    secrets = "/api/v1/namespaces/pulltag-system/secrets"
    secret = {"metadata": {"name": "pulltag-webhook-tls"}, "type": "Opaque", "data": {}}
    assert manager("POST", secrets, secret).status_code == 201
    got = manager("GET", f"{secrets}/pulltag-webhook-tls")
    assert got.status_code == 200
    assert manager("PUT", f"{secrets}/pulltag-webhook-tls", got.json()).status_code == 200
    slices = "/apis/discovery.k8s.io/v1/namespaces/pulltag-system/endpointslices"
    assert (
        manager("GET", f"{slices}?labelSelector=kubernetes.io/service-name=pulltag-webhook").status_code
        == 200
    )
    admission = "/apis/admissionregistration.k8s.io/v1"
    for resource, name in (
        ("mutatingwebhookconfigurations", "annotate.pulltag.dev"),
        ("validatingwebhookconfigurations", "record.pulltag.dev"),
    ):
        got = manager("GET", f"{admission}/{resource}/{name}")
        assert got.status_code == 200
        assert manager("PUT", f"{admission}/{resource}/{name}", got.json()).status_code == 200
        assert manager("GET", f"{admission}/{resource}").status_code == 403  # no list
        assert manager("DELETE", f"{admission}/{resource}/{name}").status_code == 403
        assert manager("GET", f"{admission}/{resource}/someone-else").status_code == 403

    kubeapi.create("secrets", {"metadata": {"name": "other"}, "data": {}}, "pulltag-system")
    kubeapi.create("namespaces", {"metadata": {"name": "apps"}})
    kubeapi.create("secrets", {"metadata": {"name": "pulltag-webhook-tls"}, "data": {}}, "apps")
    assert forbidden(manager("GET", f"{secrets}/other")).startswith('secrets "other" is forbidden')
    assert manager("GET", secrets).status_code == 403  # no list: no other Secret's data
    assert manager("DELETE", f"{secrets}/pulltag-webhook-tls").status_code == 403
    assert manager("GET", "/api/v1/namespaces/apps/secrets/pulltag-webhook-tls").status_code == 403
    assert manager("POST", "/api/v1/namespaces/apps/secrets", secret).status_code == 403
    assert manager("GET", "/apis/discovery.k8s.io/v1/namespaces/apps/endpointslices").status_code == 403
    # The webhook's ServiceAccount still has nothing.
    webhook = Raw(kubeapi, kubeapi.add_service_account_token("pulltag-system", "pulltag-webhook"))
    assert webhook("GET", f"{secrets}/pulltag-webhook-tls").status_code == 403
