"""RBAC: exactly the rules the listener uses, the Lease only in pulltag's namespace, nothing for the
webhook."""

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
LISTENER_SUBJECT = [{"kind": "ServiceAccount", "name": "pulltag-listener", "namespace": NAMESPACE}]


def test_cluster_role_exact(rendered: Rendered) -> None:
    (role,) = rendered.kinds("ClusterRole")
    assert role["metadata"]["name"] == "pulltag-listener"
    assert role["rules"] == LISTENER_CLUSTER_RULES
    assert "aggregationRule" not in role
    (binding,) = rendered.kinds("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "pulltag-listener",
    }
    assert binding["subjects"] == LISTENER_SUBJECT


def test_leader_election_role_exact(rendered: Rendered) -> None:
    roles = rendered.kinds("Role")
    bindings = rendered.kinds("RoleBinding")
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
