"""The ``pods/ephemeralcontainers`` subresource (``kubectl debug``) with the real ``kubernetes`` client:
append-only updates of ``spec.ephemeralContainers`` only, watch notifications, RBAC on the subresource,
and admission as an UPDATE with ``subResource`` whose rules must name the subresource."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.kubeapi import FakeKubeAPI, TestCA
from tests.harness.kubeapi.webhook_server import TestWebhookServer, patch_response

from ._util import Raw, WatchReader, pod

STRATEGIC = "application/strategic-merge-patch+json"
DEBUGGER = {"name": "debugger", "image": "registry.example/tools/debug:1", "targetContainerName": "app"}
NS, SVC = "pulltag-system", "hooks"


def debug_patch(*containers: dict[str, Any]) -> dict[str, Any]:
    """What ``kubectl debug`` sends: a strategic merge patch of the whole ephemeral container list."""
    return {"spec": {"ephemeralContainers": list(containers)}}


def add_debugger(core: client.CoreV1Api, name: str = "web", **kwargs: Any) -> client.V1Pod:
    return core.patch_namespaced_pod_ephemeralcontainers(
        name, "default", debug_patch(DEBUGGER), _content_type=STRATEGIC, **kwargs
    )


def api_error(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body)
    assert body["code"] == exc.value.status
    return body


# --- the subresource itself ----------------------------------------------------------------------------


def test_patch_adds_an_ephemeral_container_and_ignores_everything_else(
    kubeapi: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    created = core.create_namespaced_pod("default", pod("web", labels={"app": "web"}))
    body = debug_patch(DEBUGGER)
    # Anything else in the body is dropped without an error, as podEphemeralContainersStrategy does.
    body["metadata"] = {"labels": {"app": "changed"}, "annotations": {"x": "y"}}
    body["spec"]["containers"] = [{"name": "app", "image": "registry.example/app:2"}]
    body["status"] = {"phase": "Failed"}
    updated = core.patch_namespaced_pod_ephemeralcontainers("web", "default", body, _content_type=STRATEGIC)

    [eph] = updated.spec.ephemeral_containers
    assert (eph.name, eph.image, eph.target_container_name) == ("debugger", DEBUGGER["image"], "app")
    assert eph.image_pull_policy == "IfNotPresent"  # defaulted like any container
    assert updated.metadata.labels == {"app": "web"} and updated.metadata.annotations is None
    assert updated.spec.containers[0].image == "registry.example/app:1"
    assert updated.status.phase == "Pending"
    assert updated.metadata.uid == created.metadata.uid
    assert int(updated.metadata.resource_version) == int(created.metadata.resource_version) + 1

    # GET on the subresource is the pod; the main resource shows the same.
    via_subresource = core.read_namespaced_pod_ephemeralcontainers("web", "default")
    assert (
        via_subresource.to_dict() == core.read_namespaced_pod("web", "default").to_dict() == updated.to_dict()
    )

    # Sending the same list again changes nothing: no write, no new resourceVersion.
    again = add_debugger(core)
    assert again.metadata.resource_version == updated.metadata.resource_version


def test_replace_appends_with_optimistic_concurrency(kubeapi: FakeKubeAPI, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("web"))
    current = core.read_namespaced_pod_ephemeralcontainers("web", "default")
    current.spec.ephemeral_containers = [client.V1EphemeralContainer(name="first", image="busybox:1.36")]
    first = core.replace_namespaced_pod_ephemeralcontainers("web", "default", current)
    assert [c.name for c in first.spec.ephemeral_containers] == ["first"]

    # The body still carries the old resourceVersion: a stale replace conflicts, as on a real server.
    current.spec.ephemeral_containers.append(client.V1EphemeralContainer(name="second", image="busybox:1.37"))
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_pod_ephemeralcontainers("web", "default", current)
    assert exc.value.status == 409 and api_error(exc)["reason"] == "Conflict"

    first.spec.ephemeral_containers.append(client.V1EphemeralContainer(name="second", image="busybox:1.37"))
    second = core.replace_namespaced_pod_ephemeralcontainers("web", "default", first)
    assert [c.name for c in second.spec.ephemeral_containers] == ["first", "second"]

    second.metadata.name = "missing"
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_pod_ephemeralcontainers("missing", "default", second)
    assert exc.value.status == 404  # the subresource never creates the pod


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            [],
            "spec.ephemeralContainers",
            'Forbidden: existing ephemeral containers "debugger" may not be removed',
        ),
        (
            [{**DEBUGGER, "image": "registry.example/tools/debug:2"}],
            "spec.ephemeralContainers[debugger]",
            'Forbidden: existing ephemeral containers "debugger" may not be changed',
        ),
        (
            [DEBUGGER, {"name": "app", "image": "busybox"}],
            "spec.ephemeralContainers[1].name",
            'Duplicate value: "app"',
        ),
        ([DEBUGGER, {"name": "shell"}], "spec.ephemeralContainers[1].image", "Required value"),
        (
            [DEBUGGER, {"name": "shell", "image": "busybox", "targetContainerName": "nope"}],
            "spec.ephemeralContainers[1].targetContainerName",
            'Not found: "nope"',
        ),
    ],
)
def test_existing_ephemeral_containers_are_append_only(
    kubeapi: FakeKubeAPI, core: client.CoreV1Api, change: list[dict[str, Any]], field: str, message: str
) -> None:
    core.create_namespaced_pod("default", pod("web"))
    before = add_debugger(core)
    # A JSON merge patch replaces the list as a whole, so it can express removals and changes.
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod_ephemeralcontainers(
            "web", "default", debug_patch(*change), _content_type="application/merge-patch+json"
        )
    body = api_error(exc)
    assert (exc.value.status, body["reason"]) == (422, "Invalid")
    assert body["message"] == f'Pod "web" is invalid: {field}: {message}'
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [(field, message)]
    assert core.read_namespaced_pod("web", "default").to_dict() == before.to_dict()


def test_json_patch_and_watchers(kubeapi: FakeKubeAPI, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("web"))
    watch = WatchReader(
        kubeapi, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={kubeapi.resource_version}"
    )
    try:
        ops = [{"op": "add", "path": "/spec/ephemeralContainers", "value": [DEBUGGER]}]
        updated = core.patch_namespaced_pod_ephemeralcontainers(
            "web", "default", ops
        )  # JSON Patch by default
        event = watch.next()
        assert event is not None and event["type"] == "MODIFIED"
        assert event["object"]["metadata"]["resourceVersion"] == updated.metadata.resource_version
        assert [c["name"] for c in event["object"]["spec"]["ephemeralContainers"]] == ["debugger"]
        assert event["object"]["metadata"]["uid"] == created.metadata.uid
    finally:
        watch.close()


def test_dry_run_stores_nothing(kubeapi: FakeKubeAPI, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("web"))
    answer = add_debugger(core, dry_run="All")
    assert [c.name for c in answer.spec.ephemeral_containers] == ["debugger"]
    stored = kubeapi.get("pods", "web", "default")
    assert "ephemeralContainers" not in stored["spec"]
    assert stored["metadata"]["resourceVersion"] == created.metadata.resource_version


def test_discovery_lists_the_subresource(kubeapi: FakeKubeAPI) -> None:
    resources = Raw(kubeapi)("GET", "/api/v1").json()["resources"]
    [entry] = [r for r in resources if r["name"] == "pods/ephemeralcontainers"]
    assert entry["kind"] == "Pod" and entry["namespaced"] is True
    assert sorted(entry["verbs"]) == ["get", "patch", "update"]


# --- RBAC -------------------------------------------------------------------------------------------


def _role(kubeapi: FakeKubeAPI, user: str, resources: list[str], verbs: list[str]) -> Raw:
    kubeapi.load_manifests(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": user, "namespace": "default"},
                "rules": [{"apiGroups": [""], "resources": resources, "verbs": verbs}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": user, "namespace": "default"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
                "subjects": [{"kind": "User", "name": user}],
            },
        ]
    )
    return Raw(kubeapi, kubeapi.add_token(user))


@pytest.mark.parametrize(
    ("resources", "verbs", "allowed"),
    [
        (["pods"], ["get", "patch", "update"], False),  # the pod itself does not grant the subresource
        (["pods/ephemeralcontainers"], ["get"], False),
        (["pods/ephemeralcontainers"], ["patch"], True),
        (["pods/*"], ["patch"], False),  # unlike webhook rules, RBAC has no "resource/*" wildcard
        (["*/ephemeralcontainers"], ["patch"], True),
        (["*"], ["patch"], True),
    ],
)
def test_rbac_on_the_subresource(
    kubeapi: FakeKubeAPI, resources: list[str], verbs: list[str], allowed: bool
) -> None:
    kubeapi.create("pods", pod("web"))
    raw = _role(kubeapi, "debugger", resources, verbs)
    r = raw(
        "PATCH",
        "/api/v1/namespaces/default/pods/web/ephemeralcontainers",
        debug_patch(DEBUGGER),
        content_type=STRATEGIC,
    )
    if allowed:
        assert r.status_code == 200
        return
    assert r.status_code == 403
    assert r.json()["message"] == (
        'pods "web" is forbidden: User "debugger" cannot patch resource "pods/ephemeralcontainers" '
        'in API group "" in the namespace "default"'
    )


# --- admission ----------------------------------------------------------------------------------------


class Hooks:
    """The test webhook's answers per path, and what it was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {
            # A mutating webhook that tries to annotate: the subresource must drop this.
            "/mutate": lambda req: patch_response(
                [{"op": "add", "path": "/metadata/annotations", "value": {"seen": req["operation"]}}]
            ),
            "/validate": lambda req: {"allowed": True, "warnings": ["recorded"]},
        }

    def __call__(self, path: str, req: dict[str, Any]) -> dict[str, Any]:
        return dict(self.answers.get(path, lambda _req: {"allowed": True})(req))


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("ephemeral-webhook-ca")


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def webhook(ca: TestCA, hooks: Hooks) -> Iterator[TestWebhookServer]:
    server = TestWebhookServer(hooks, ca.issue(dns_names=[f"{SVC}.{NS}.svc"])).start()
    yield server
    server.stop()


def configuration(kind: str, hooks: dict[str, list[dict[str, Any]]], ca: TestCA) -> dict[str, Any]:
    """One webhook per path, all with the given rules."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": kind.lower()},
        "webhooks": [
            {
                "name": f"{path.strip('/').replace('/', '-')}.test.dev",
                "clientConfig": {
                    "service": {"namespace": NS, "name": SVC, "path": path},
                    "caBundle": base64.b64encode(ca.ca_pem).decode(),
                },
                "rules": rules,
                "sideEffects": "NoneOnDryRun",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
            }
            for path, rules in hooks.items()
        ],
    }


def rule(operations: list[str], resources: list[str]) -> dict[str, Any]:
    return {"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": resources}


@pytest.fixture
def admitted(kubeapi: FakeKubeAPI, webhook: TestWebhookServer, ca: TestCA) -> FakeKubeAPI:
    """pulltag's rules: the mutating webhook on pod CREATE plus (to show its patch is dropped) the
    subresource; the validating one on pod CREATE and UPDATE of pods/ephemeralcontainers."""
    pulltag = [rule(["CREATE"], ["pods"]), rule(["UPDATE"], ["pods/ephemeralcontainers"])]
    kubeapi.load_manifests(
        [
            configuration("MutatingWebhookConfiguration", {"/mutate": pulltag}, ca),
            configuration("ValidatingWebhookConfiguration", {"/validate": pulltag}, ca),
        ]
    )
    kubeapi.route_service(NS, SVC, 443, target_port=webhook.port)
    return kubeapi


def reviews(webhook: TestWebhookServer, path: str) -> list[dict[str, Any]]:
    return [r["request"] for p, r in webhook.requests if p.split("?")[0] == path]


def test_the_webhooks_see_an_update_of_the_subresource(
    admitted: FakeKubeAPI, webhook: TestWebhookServer, core: client.CoreV1Api
) -> None:
    created = core.create_namespaced_pod("default", pod("web", labels={"app": "web"}))
    assert created.metadata.annotations == {"seen": "CREATE"}
    webhook.requests.clear()

    r = Raw(admitted)(
        "PATCH", "/api/v1/namespaces/default/pods/web/ephemeralcontainers", debug_patch(DEBUGGER), STRATEGIC
    )
    assert r.status_code == 200, r.text
    assert r.raw.headers.getlist("Warning") == ['299 - "recorded"']
    updated = r.json()
    assert updated["metadata"]["annotations"] == {"seen": "CREATE"}  # the mutating patch was dropped
    assert [c["name"] for c in updated["spec"]["ephemeralContainers"]] == ["debugger"]

    [m] = reviews(webhook, "/mutate")
    [v] = reviews(webhook, "/validate")
    for review in (m, v):
        assert review["operation"] == "UPDATE"
        assert (
            review["resource"]
            == review["requestResource"]
            == {"group": "", "version": "v1", "resource": "pods"}
        )
        assert review["subResource"] == review["requestSubResource"] == "ephemeralcontainers"
        assert review["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
        assert (review["name"], review["namespace"]) == ("web", "default")
        assert review["options"] == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
        assert review["dryRun"] is False
        assert "ephemeralContainers" not in review["oldObject"]["spec"]
        assert review["oldObject"]["metadata"]["resourceVersion"] == created.metadata.resource_version
    # The validating webhook sees the whole pod as it will be stored: uid, labels, containers, node...
    obj = v["object"]
    assert obj["metadata"]["uid"] == created.metadata.uid
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert obj["metadata"]["annotations"] == {"seen": "CREATE"}
    assert [c["name"] for c in obj["spec"]["containers"]] == ["app"]
    assert obj["spec"]["ephemeralContainers"][0]["image"] == DEBUGGER["image"]


def test_a_validating_denial_keeps_the_pod_as_it_was(
    admitted: FakeKubeAPI, hooks: Hooks, core: client.CoreV1Api
) -> None:
    created = core.create_namespaced_pod("default", pod("web"))
    hooks.answers["/validate"] = lambda req: (
        {"allowed": False, "status": {"message": "no debugging here"}}
        if req.get("subResource") == "ephemeralcontainers"
        else {"allowed": True}
    )
    with pytest.raises(ApiException) as exc:
        add_debugger(core)
    assert exc.value.status == 400
    assert api_error(exc)["message"] == (
        'admission webhook "validate.test.dev" denied the request: no debugging here'
    )
    assert core.read_namespaced_pod("web", "default").to_dict() == created.to_dict()


def test_an_invalid_update_is_refused_before_validating_webhooks(
    admitted: FakeKubeAPI, webhook: TestWebhookServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod("web"))
    add_debugger(core)
    webhook.requests.clear()
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod_ephemeralcontainers(
            "web", "default", debug_patch(), _content_type="application/merge-patch+json"
        )
    assert exc.value.status == 422
    assert [p.split("?")[0] for p, _ in webhook.requests] == [
        "/mutate"
    ]  # as the real API server: mutate first


def test_dry_run_reaches_the_webhooks_as_dry_run(
    admitted: FakeKubeAPI, webhook: TestWebhookServer, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod("web"))
    webhook.requests.clear()
    add_debugger(core, dry_run="All")
    assert [r["request"]["dryRun"] for _, r in webhook.requests] == [True, True]
    assert [r["request"]["options"]["dryRun"] for _, r in webhook.requests] == [["All"], ["All"]]
    assert "ephemeralContainers" not in admitted.get("pods", "web", "default")["spec"]


@pytest.mark.parametrize(
    ("resources", "matches"),
    [
        (["pods"], False),  # the resource alone never matches a subresource
        (["*"], False),  # nor does "*": it is every resource without a subresource
        (["pods/status"], False),
        (["pods/ephemeralcontainers"], True),
        (["pods/*"], True),
        (["*/ephemeralcontainers"], True),
        (["*/*"], True),
        (["pods", "pods/ephemeralcontainers"], True),
    ],
)
def test_rules_must_name_the_subresource(
    kubeapi: FakeKubeAPI,
    webhook: TestWebhookServer,
    ca: TestCA,
    core: client.CoreV1Api,
    resources: list[str],
    matches: bool,
) -> None:
    kubeapi.load_manifests(
        configuration("ValidatingWebhookConfiguration", {"/validate": [rule(["UPDATE"], resources)]}, ca)
    )
    kubeapi.route_service(NS, SVC, 443, target_port=webhook.port)
    core.create_namespaced_pod("default", pod("web"))
    add_debugger(core)
    assert len(reviews(webhook, "/validate")) == (1 if matches else 0)


def test_in_process_patch_runs_admission_when_asked(
    admitted: FakeKubeAPI, webhook: TestWebhookServer
) -> None:
    admitted.create("pods", pod("web"), admit=True)
    admitted.patch("pods", "web", debug_patch(DEBUGGER), "default", subresource="ephemeralcontainers")
    assert [r["request"]["operation"] for _, r in webhook.requests] == ["CREATE", "CREATE"]
    admitted.patch(
        "pods",
        "web",
        debug_patch(DEBUGGER, {"name": "shell", "image": "busybox"}),
        "default",
        subresource="ephemeralcontainers",
        admit=True,
    )
    [last] = reviews(webhook, "/validate")[1:]
    assert last["subResource"] == "ephemeralcontainers"
    assert [c["name"] for c in last["object"]["spec"]["ephemeralContainers"]] == ["debugger", "shell"]
