"""RBAC: exactly the rules the listener uses, the Lease only in pulltag's namespace, nothing for the
webhook; with self-managed certificates, the one Secret (create aside), the webhook Service's
EndpointSlices in pulltag's namespace, and the two WebhookConfigurations by name."""

from __future__ import annotations

from typing import Any

from tests.unit.manifests.render import NAMESPACE, Rendered

LISTENER_CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
LEADER_ELECTION_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["pulltag-listener"],
        "verbs": ["get", "update"],
    },
]
CERTIFICATE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["pulltag-webhook-tls"],
        "verbs": ["get", "update"],
    },
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
]
CABUNDLE_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": ["annotate.pulltag.dev"],
        "verbs": ["get", "update"],
    },
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "resourceNames": ["record.pulltag.dev"],
        "verbs": ["get", "update"],
    },
]
LISTENER_SUBJECT = [{"kind": "ServiceAccount", "name": "pulltag-listener", "namespace": NAMESPACE}]


def _binding(rendered: Rendered, kind: str, name: str) -> dict[str, Any]:
    binding = rendered.get(kind, name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": kind.removesuffix("Binding"),
        "name": name,
    }
    assert binding["subjects"] == LISTENER_SUBJECT
    return binding


def test_cluster_role_exact(rendered: Rendered) -> None:
    roles = {r["metadata"]["name"]: r for r in rendered.kinds("ClusterRole")}
    bindings = {b["metadata"]["name"] for b in rendered.kinds("ClusterRoleBinding")}
    if rendered.self_managed:
        assert roles["pulltag-listener-webhook-cabundle"]["rules"] == CABUNDLE_RULES
        _binding(rendered, "ClusterRoleBinding", "pulltag-listener-webhook-cabundle")
        assert set(roles) == set(bindings) == {"pulltag-listener", "pulltag-listener-webhook-cabundle"}
    else:
        assert set(roles) == set(bindings) == {"pulltag-listener"}
    role = roles["pulltag-listener"]
    assert role["rules"] == LISTENER_CLUSTER_RULES
    assert "aggregationRule" not in role
    binding = rendered.get("ClusterRoleBinding", "pulltag-listener")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "pulltag-listener",
    }
    assert binding["subjects"] == LISTENER_SUBJECT


def test_certificate_role_exact(rendered: Rendered) -> None:
    if not rendered.self_managed:
        assert ("Role", "pulltag-listener-certificates") not in rendered.by_key
        return
    role = rendered.get("Role", "pulltag-listener-certificates")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == CERTIFICATE_RULES
    binding = _binding(rendered, "RoleBinding", "pulltag-listener-certificates")
    assert binding["metadata"]["namespace"] == NAMESPACE


def test_leader_election_role_exact(rendered: Rendered) -> None:
    certificates = ("pulltag-listener-certificates",)
    roles = [r for r in rendered.kinds("Role") if r["metadata"]["name"] not in certificates]
    bindings = [b for b in rendered.kinds("RoleBinding") if b["metadata"]["name"] not in certificates]
    if rendered.single_pod:
        # --no-leader-election: no Lease at all.
        assert roles == [] and bindings == []
        return
    (role,) = roles
    assert role["metadata"]["name"] == "pulltag-listener-leader-election"
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == LEADER_ELECTION_RULES
    (binding,) = bindings
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pulltag-listener-leader-election",
    }
    assert binding["subjects"] == LISTENER_SUBJECT


def test_no_wildcards_anywhere(rendered: Rendered) -> None:
    for role in rendered.kinds("ClusterRole") + rendered.kinds("Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert not any("/" in r for r in rule["resources"]), "no subresources are used"


def test_webhook_service_account_has_no_bindings_and_no_token(rendered: Rendered) -> None:
    for binding in rendered.kinds("RoleBinding") + rendered.kinds("ClusterRoleBinding"):
        for subject in binding["subjects"]:
            assert subject.get("name") != "pulltag-webhook", binding["metadata"]["name"]
            assert subject["kind"] == "ServiceAccount"
    accounts = {o["metadata"]["name"]: o for o in rendered.kinds("ServiceAccount")}
    if rendered.single_pod:
        assert set(accounts) == {"pulltag-listener"}
    else:
        assert set(accounts) == {"pulltag-webhook", "pulltag-listener"}
        assert accounts["pulltag-webhook"]["automountServiceAccountToken"] is False
