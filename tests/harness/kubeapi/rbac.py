"""Authentication (bearer tokens) and RBAC authorization with kube-apiserver's rule semantics."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from .resources import Obj


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)

    def info(self) -> dict[str, Any]:
        """authentication.k8s.io/v1 UserInfo, as in AdmissionReview.request.userInfo."""
        out: dict[str, Any] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes for a resource request."""

    user: User
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str

    def forbidden_reason(self) -> str:
        # responsewriters.forbiddenMessage
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return (
            f'User "{self.user.name}" cannot {self.verb} resource "{res}" in API group '
            f'"{self.api_group}" {where}'
        )


class Authenticator:
    def __init__(self) -> None:
        self._tokens: dict[str, User] = {}
        self._lock = threading.Lock()

    def add(self, user: User, token: str | None = None) -> str:
        token = token or secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = user
        return token

    def remove(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def authenticate(self, authorization_header: str | None) -> User | None:
        if not authorization_header:
            return None
        scheme, _, token = authorization_header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self._lock:
            return self._tokens.get(token.strip())


def _matches(values: list[str] | None, wanted: str) -> bool:
    return bool(values) and ("*" in values or wanted in values)  # type: ignore[operator]


def _resource_matches(rule_resources: list[str], resource: str, subresource: str) -> bool:
    # rbac.ResourceMatches: "*" matches everything (including subresources), "pods/status" matches
    # exactly, "*/status" matches that subresource of anything.
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule_resources:
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not _matches(rule.get("verbs"), attrs.verb):
        return False
    if not _matches(rule.get("apiGroups"), attrs.api_group):
        return False
    if not _resource_matches(rule.get("resources") or [], attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


class RBACAuthorizer:
    """Roles, ClusterRoles and their bindings, loaded from manifests (rbac.authorization.k8s.io/v1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.roles: dict[tuple[str, str], Obj] = {}
        self.cluster_roles: dict[str, Obj] = {}
        self.role_bindings: dict[tuple[str, str], Obj] = {}
        self.cluster_role_bindings: dict[str, Obj] = {}

    def load(self, obj: Obj) -> bool:
        """Take an RBAC object; False if ``obj`` is not one."""
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace") or "default"
        with self._lock:
            if kind == "Role":
                self.roles[(ns, name)] = obj
            elif kind == "ClusterRole":
                self.cluster_roles[name] = obj
            elif kind == "RoleBinding":
                self.role_bindings[(ns, name)] = obj
            elif kind == "ClusterRoleBinding":
                self.cluster_role_bindings[name] = obj
            else:
                return False
        return True

    @staticmethod
    def _subject_matches(subject: Obj, user: User, binding_ns: str) -> bool:
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            ns = subject.get("namespace") or binding_ns
            return user.name == f"system:serviceaccount:{ns}:{subject.get('name')}"
        if kind == "User":
            return user.name == subject.get("name")
        if kind == "Group":
            return subject.get("name") in user.groups
        return False

    def _cluster_role_rules(self, name: str) -> list[Obj]:
        role = self.cluster_roles.get(name)
        if role is None:
            return []
        rules = list(role.get("rules") or [])
        # aggregationRule: union of the rules of ClusterRoles whose labels match.
        agg = role.get("aggregationRule") or {}
        for sel in agg.get("clusterRoleSelectors") or []:
            from .selectors import selector_object_matches

            for other in self.cluster_roles.values():
                if other is not role and selector_object_matches(
                    sel, (other.get("metadata") or {}).get("labels")
                ):
                    rules.extend(other.get("rules") or [])
        return rules

    def _role_ref_rules(self, ref: Obj, binding_ns: str) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            return self._cluster_role_rules(ref.get("name", ""))
        role = self.roles.get((binding_ns, ref.get("name", "")))
        return list((role or {}).get("rules") or [])

    def _binding_allows(self, binding: Obj, binding_ns: str, attrs: Attributes) -> bool:
        if not any(self._subject_matches(s, attrs.user, binding_ns) for s in binding.get("subjects") or []):
            return False
        rules = self._role_ref_rules(binding.get("roleRef") or {}, binding_ns)
        return any(rule_allows(r, attrs) for r in rules)

    def allowed(self, attrs: Attributes) -> bool:
        if "system:masters" in attrs.user.groups:
            return True  # the superuser group bypasses RBAC, as in kube-apiserver
        with self._lock:
            if any(self._binding_allows(crb, "", attrs) for crb in self.cluster_role_bindings.values()):
                return True
            # RoleBindings grant only inside their own namespace (never at the cluster scope).
            return bool(attrs.namespace) and any(
                self._binding_allows(rb, ns, attrs)
                for (ns, _), rb in self.role_bindings.items()
                if ns == attrs.namespace
            )
