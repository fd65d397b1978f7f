"""The real ``kubernetes`` Python client against the fake: CRUD, patches, watches, error shapes."""

from __future__ import annotations

import json
import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.harness.kubeapi import FakeKubeAPI

from ._util import event, pod, wait_for


def test_harness_serves_as_soon_as_started(tmp_path):
    """start() returns a server that answers at once (no wait) through the kubeconfig it writes."""
    api = FakeKubeAPI().start()
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=api.write_kubeconfig(tmp_path / "kc"), client_configuration=cfg)
        with client.ApiClient(cfg) as c:
            names = {n.metadata.name for n in client.CoreV1Api(c).list_namespace().items}
        assert {"default", "kube-system"} <= names
    finally:
        api.close()
    assert not api.running


def test_namespaces_and_pods_crud(core: client.CoreV1Api, kubeapi: FakeKubeAPI):
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system"} <= names
    ns = core.create_namespace({"metadata": {"name": "x", "labels": {"team": "a"}}})
    assert ns.metadata.labels == {"team": "a", "kubernetes.io/metadata.name": "x"}
    assert ns.status.phase == "Active"

    created = core.create_namespaced_pod("x", pod("web", "x"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.status.phase == "Pending" and created.status.qos_class == "BestEffort"
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"
    rv1 = int(created.metadata.resource_version)

    got = core.read_namespaced_pod("web", "x")
    assert got.metadata.uid == created.metadata.uid

    gen = core.create_namespaced_pod("x", pod(generate_name="job-", namespace="x"))
    assert gen.metadata.name.startswith("job-") and len(gen.metadata.name) == len("job-") + 5
    assert set(gen.metadata.name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert int(gen.metadata.resource_version) > rv1

    listed = core.list_namespaced_pod("x")
    assert [p.metadata.name for p in listed.items] == sorted(["web", gen.metadata.name])
    assert int(listed.metadata.resource_version) == kubeapi.resource_version
    assert len(core.list_pod_for_all_namespaces().items) == 2

    deleted = core.delete_namespaced_pod("web", "x")
    assert deleted.metadata.name == "web"
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_pod("web", "x")
    assert ei.value.status == 404
    assert json.loads(ei.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "web" not found',
        "reason": "NotFound",
        "details": {"name": "web", "kind": "pods"},
        "code": 404,
    }


def test_error_statuses(core: client.CoreV1Api):
    core.create_namespaced_pod("default", pod("a"))
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod("default", pod("a"))
    body = json.loads(ei.value.body)
    assert (ei.value.status, body["reason"], body["message"]) == (
        409,
        "AlreadyExists",
        'pods "a" already exists',
    )

    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod("nope", pod("a", "nope"))
    assert json.loads(ei.value.body)["message"] == 'namespaces "nope" not found'

    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod("default", {"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}})
    body = json.loads(ei.value.body)
    assert ei.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('Pod "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name"')
    assert {c["field"] for c in body["details"]["causes"]} == {"metadata.name", "spec.containers"}

    # Update with a stale resourceVersion: 409 Conflict with the real message.
    current = core.read_namespaced_pod("a", "default")
    stale = current.metadata.resource_version
    current.metadata.labels = {"v": "1"}
    core.replace_namespaced_pod("a", "default", current)
    current.metadata.labels = {"v": "2"}
    current.metadata.resource_version = stale
    with pytest.raises(ApiException) as ei:
        core.replace_namespaced_pod("a", "default", current)
    body = json.loads(ei.value.body)
    assert ei.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on pods "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_update_keeps_status_and_status_subresource_keeps_spec(core: client.CoreV1Api):
    core.create_namespaced_pod("default", pod("a"))
    p = core.read_namespaced_pod("a", "default")
    p.status.phase = "Running"
    p.metadata.labels = {"x": "y"}
    updated = core.replace_namespaced_pod("a", "default", p)
    assert updated.status.phase == "Pending"  # the main resource ignores status
    assert updated.metadata.labels == {"x": "y"}
    p = core.read_namespaced_pod("a", "default")
    p.status.phase = "Running"
    p.metadata.labels = {"x": "changed"}
    updated = core.replace_namespaced_pod_status("a", "default", p)
    assert updated.status.phase == "Running"
    assert updated.metadata.labels == {"x": "y"}  # status ignores metadata (ResetObjectMetaForStatus)


def test_patches(core: client.CoreV1Api):
    core.create_namespaced_pod("default", pod("a", labels={"keep": "1", "drop": "1"}))
    # JSON merge patch
    p = core.patch_namespaced_pod(
        "a",
        "default",
        {"metadata": {"labels": {"drop": None, "new": "2"}}},
        _content_type="application/merge-patch+json",
    )
    assert p.metadata.labels == {"keep": "1", "new": "2"}
    # JSON patch (the client picks application/json-patch+json for a list body)
    p = core.patch_namespaced_pod(
        "a",
        "default",
        [
            {"op": "add", "path": "/metadata/annotations", "value": {"pulltag.dev/images": "{}"}},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "registry.example/app:2"},
        ],
    )
    assert p.metadata.annotations == {"pulltag.dev/images": "{}"}
    assert p.spec.containers[0].image == "registry.example/app:2"
    # Strategic merge on pods/status (the client default for a dict body): conditions merge by type,
    # containerStatuses (atomic) are replaced.
    status = {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "registry.example/app:2",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                }
            ],
        }
    }
    core.patch_namespaced_pod_status("a", "default", status)
    p = core.patch_namespaced_pod_status(
        "a",
        "default",
        {
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": "registry.example/app:2",
                        "ready": True,
                        "restartCount": 0,
                        "imageID": "registry.example/app@sha256:" + "a" * 64,
                    }
                ],
            }
        },
    )
    assert p.status.phase == "Running"
    assert {c.type: c.status for c in p.status.conditions} == {"Ready": "True", "Initialized": "True"}
    assert p.status.container_statuses[0].image_id.endswith("a" * 64)
    # Merge patch on status too
    p = core.patch_namespaced_pod_status(
        "a", "default", {"status": {"phase": "Succeeded"}}, _content_type="application/merge-patch+json"
    )
    assert p.status.phase == "Succeeded"
    # A status patch cannot change the spec
    p = core.patch_namespaced_pod_status("a", "default", {"spec": {"nodeName": "n1"}})
    assert p.spec.node_name is None
    # A JSON patch test failure is a 422
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_pod("a", "default", [{"op": "test", "path": "/metadata/name", "value": "b"}])
    assert ei.value.status == 422


def test_events_both_api_versions_share_a_store(api_client: client.ApiClient, core: client.CoreV1Api):
    # (eventTime is required by the client's events.k8s.io/v1 model, not by the server)
    core.create_namespaced_event("default", {**event("e1"), "eventTime": "2026-01-01T00:00:00.000000Z"})
    ev1 = client.EventsV1Api(api_client)
    got = ev1.read_namespaced_event("e1", "default")
    assert (
        got.regarding.name == "p" and got.note == "Pulled something" and got.reporting_controller == "kubelet"
    )
    ev1.create_namespaced_event(
        "default",
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e2"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "pulltag",
            "reportingInstance": "pulltag-1",
            "action": "Tag",
            "reason": "ImageTagged",
            "type": "Normal",
            "note": "tagged",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "p"},
        },
    )
    core_view = core.read_namespaced_event("e2", "default")
    assert core_view.message == "tagged" and core_view.involved_object.name == "p"
    assert core_view.reporting_component == "pulltag"
    assert {e.metadata.name for e in core.list_event_for_all_namespaces().items} == {"e1", "e2"}
    only = ev1.list_namespaced_event("default", field_selector="reportingController=pulltag").items
    assert [e.metadata.name for e in only] == ["e2"]
    core.delete_namespaced_event("e1", "default")
    assert [e.metadata.name for e in ev1.list_event_for_all_namespaces().items] == ["e2"]


def test_leases(api_client: client.ApiClient):
    coord = client.CoordinationV1Api(api_client)
    lease = coord.create_namespaced_lease(
        "default",
        {
            "metadata": {"name": "pulltag-listener"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "b"
    updated = coord.replace_namespaced_lease("pulltag-listener", "default", lease)
    assert updated.spec.holder_identity == "b"
    lease.spec.holder_identity = "c"  # stale resourceVersion now
    with pytest.raises(ApiException) as ei:
        coord.replace_namespaced_lease("pulltag-listener", "default", lease)
    assert ei.value.status == 409
    assert "leases.coordination.k8s.io" in json.loads(ei.value.body)["message"]


def test_client_watch_and_relist_after_410(core: client.CoreV1Api, kubeapi: FakeKubeAPI):
    core.create_namespaced_pod("default", pod("a"))
    listed = core.list_namespaced_pod("default")
    rv = listed.metadata.resource_version

    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def run() -> None:
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: kubeapi.open_watches == 1, what="watch open")
    core.create_namespaced_pod("default", pod("b"))
    core.patch_namespaced_pod("b", "default", {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("a", "default")
    t.join(5)
    assert seen == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]

    # Compaction: the old resourceVersion is gone; the client gets 410 and must relist.
    kubeapi.compact()
    with pytest.raises(ApiException) as ei:
        for _ in watch.Watch().stream(
            core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5
        ):
            pass
    assert ei.value.status == 410
    assert "too old resource version" in ei.value.reason
    relisted = core.list_namespaced_pod("default")
    assert [p.metadata.name for p in relisted.items] == ["b"]
    core.create_namespaced_pod("default", pod("c"))
    got = []
    for ev in watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        resource_version=relisted.metadata.resource_version,
        timeout_seconds=1,
    ):
        got.append((ev["type"], ev["object"].metadata.name))
    assert got == [("ADDED", "c")]


def test_client_watch_bookmarks_and_raw(core: client.CoreV1Api, kubeapi: FakeKubeAPI):
    kubeapi.bookmark_interval = 0.1
    rv = core.list_namespaced_pod("default").metadata.resource_version
    w = watch.Watch()
    types = []
    for ev in w.stream(
        core.list_namespaced_pod,
        "default",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
        deserialize=False,
    ):
        types.append(ev["type"])
        if ev["type"] == "BOOKMARK":
            assert ev["object"] == {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
            w.stop()
    assert types == ["BOOKMARK"]
