"""List/watch semantics over raw HTTP: selectors, paging, 410s, watch shapes, bookmarks, TTL."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time

import pytest

from tests.harness.kubeapi import FakeKubeAPI

from ._util import Raw, WatchReader, event, pod, wait_for


@pytest.fixture
def raw(kubeapi: FakeKubeAPI) -> Raw:
    return Raw(kubeapi)


def names(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [i["metadata"]["name"] for i in resp.json()["items"]]


def test_resource_versions_are_global_and_increasing(kubeapi: FakeKubeAPI, raw: Raw):
    rvs = []
    for i in range(3):
        r = raw("POST", "/api/v1/namespaces/default/pods", pod(f"p{i}"))
        assert r.status_code == 201
        rvs.append(int(r.json()["metadata"]["resourceVersion"]))
    r = raw("POST", "/api/v1/namespaces/default/events", event("e"))
    rvs.append(int(r.json()["metadata"]["resourceVersion"]))
    assert rvs == sorted(rvs) and len(set(rvs)) == 4 and rvs[-1] == kubeapi.resource_version
    listed = raw("GET", "/api/v1/pods").json()
    assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"
    assert int(listed["metadata"]["resourceVersion"]) == rvs[-1]
    assert "kind" not in listed["items"][0]  # typed list items carry no kind/apiVersion


def test_label_selectors(kubeapi: FakeKubeAPI, raw: Raw):
    kubeapi.create("pods", pod("a", labels={"app": "web", "tier": "fe"}))
    kubeapi.create("pods", pod("b", labels={"app": "db"}))
    kubeapi.create("pods", pod("c"))
    cases = {
        "app=web": ["a"],
        "app==web": ["a"],
        "app!=web": ["b", "c"],
        "app in (web,db)": ["a", "b"],
        "app notin (web)": ["b", "c"],
        "app": ["a", "b"],
        "!app": ["c"],
        "app,tier=fe": ["a"],
        "app in (web, db),!tier": ["b"],
    }
    for sel, want in cases.items():
        assert names(raw("GET", "/api/v1/namespaces/default/pods", params={"labelSelector": sel})) == want, (
            sel
        )
    bad = raw("GET", "/api/v1/pods", params={"labelSelector": "app in (web"})
    assert bad.status_code == 400 and bad.json()["reason"] == "BadRequest"


def test_field_selectors(kubeapi: FakeKubeAPI, raw: Raw):
    kubeapi.create("namespaces", {"metadata": {"name": "x"}})
    kubeapi.create("events", event("e1", reason="Pulled", pod_name="p1"))
    kubeapi.create("events", event("e2", reason="Pulling", pod_name="p1"))
    kubeapi.create(
        "events",
        event(
            "e3",
            namespace="x",
            reason="Pulled",
            pod_name="p2",
            etype="Warning",
            component="pulltag",
            field_path="spec.initContainers{init}",
        ),
    )
    cases = {
        "reason=Pulled": ["e1", "e3"],
        "reason==Pulled,type=Normal": ["e1"],
        "reason!=Pulled": ["e2"],
        "source=kubelet": ["e1", "e2"],
        "reportingComponent=pulltag": ["e3"],
        "involvedObject.kind=Pod,involvedObject.name=p1": ["e1", "e2"],
        "involvedObject.uid=uid-p2": ["e3"],
        "involvedObject.namespace=x": ["e3"],
        "involvedObject.fieldPath=spec.initContainers{init}": ["e3"],
        "metadata.name=e2": ["e2"],
        "metadata.namespace=x": ["e3"],
        "type=Warning": ["e3"],
    }
    for sel, want in cases.items():
        assert names(raw("GET", "/api/v1/events", params={"fieldSelector": sel})) == want, sel
    # events.k8s.io/v1 spells the same fields its own way
    r = raw("GET", "/apis/events.k8s.io/v1/events", params={"fieldSelector": "regarding.name=p2"})
    assert names(r) == ["e3"] and r.json()["items"][0]["regarding"]["name"] == "p2"

    kubeapi.create("pods", pod("a"))
    kubeapi.create("pods", pod("b"))
    kubeapi.patch("pods", "b", {"spec": {"nodeName": "n1"}}, "default")
    kubeapi.patch("pods", "a", {"status": {"phase": "Running"}}, "default", subresource="status")
    assert names(raw("GET", "/api/v1/pods", params={"fieldSelector": "spec.nodeName=n1"})) == ["b"]
    assert names(raw("GET", "/api/v1/pods", params={"fieldSelector": "status.phase=Running"})) == ["a"]
    assert names(raw("GET", "/api/v1/pods", params={"fieldSelector": "status.phase!=Running"})) == ["b"]

    bad = raw("GET", "/api/v1/events", params={"fieldSelector": "message=x"})
    assert bad.status_code == 400
    assert bad.json()["message"] == "field label not supported: message"


def test_paging_and_expired_continue(kubeapi: FakeKubeAPI, raw: Raw):
    for i in range(5):
        kubeapi.create("pods", pod(f"p{i}"))
    first = raw("GET", "/api/v1/namespaces/default/pods", params={"limit": 2}).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    token = first["metadata"]["continue"]
    # Changes after the first page do not show up in later pages (consistent snapshot)...
    kubeapi.delete("pods", "p2", "default")
    kubeapi.create("pods", pod("p25"))
    second = raw("GET", "/api/v1/namespaces/default/pods", params={"limit": 2, "continue": token}).json()
    assert [i["metadata"]["name"] for i in second["items"]] == ["p2", "p3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = raw(
        "GET",
        "/api/v1/namespaces/default/pods",
        params={"limit": 2, "continue": second["metadata"]["continue"]},
    ).json()
    assert [i["metadata"]["name"] for i in third["items"]] == ["p4"]
    assert "continue" not in third["metadata"]

    # ...until compaction: then the token has expired (410) and the Status offers an inconsistent one.
    kubeapi.compact()
    r = raw("GET", "/api/v1/namespaces/default/pods", params={"limit": 2, "continue": token})
    assert r.status_code == 410
    status = r.json()
    assert status["reason"] == "Expired" and status["code"] == 410
    assert status["message"].startswith("The provided continue parameter is too old")
    rest = raw(
        "GET",
        "/api/v1/namespaces/default/pods",
        params={"limit": 10, "continue": status["metadata"]["continue"]},
    )
    assert names(rest) == ["p25", "p3", "p4"]
    garbage = raw("GET", "/api/v1/pods", params={"limit": 1, "continue": base64.b64encode(b"x").decode()})
    assert garbage.status_code == 400


def test_watch_wire_format_and_order(kubeapi: FakeKubeAPI):
    rv = kubeapi.resource_version
    ctx = ssl.create_default_context(cafile=kubeapi.ca_file)
    with (
        socket.create_connection(("127.0.0.1", kubeapi.port), timeout=5) as s,
        ctx.wrap_socket(s, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            f"GET /api/v1/namespaces/default/pods?watch=1&resourceVersion={rv} HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: Bearer {kubeapi.admin_token}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Type: application/json\r\n" in head and b"Transfer-Encoding: chunked" in head
        kubeapi.create("pods", pod("a"))
        # The event arrives as its own chunk, flushed at once (we are not closing anything).
        buf = b""
        while not buf.endswith(b"\n\r\n"):
            buf += tls.recv(4096)
        size, _, payload = buf.partition(b"\r\n")
        assert int(size, 16) == len(payload) - 2
        ev = json.loads(payload)
        assert (
            ev["type"] == "ADDED"
            and ev["object"]["kind"] == "Pod"
            and ev["object"]["metadata"]["name"] == "a"
        )


def test_watch_delivers_every_change_in_order(kubeapi: FakeKubeAPI):
    rv = kubeapi.resource_version
    for i in range(3):
        kubeapi.create("pods", pod(f"p{i}"))
    kubeapi.patch("pods", "p1", {"metadata": {"labels": {"a": "b"}}}, "default")
    kubeapi.delete("pods", "p0", "default")
    w = WatchReader(kubeapi, f"/api/v1/pods?watch=true&resourceVersion={rv}")
    evs = w.collect(5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "p0"),
        ("ADDED", "p1"),
        ("ADDED", "p2"),
        ("MODIFIED", "p1"),
        ("DELETED", "p0"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == list(range(rv + 1, rv + 6))
    w.close()


@pytest.mark.parametrize("start", ["", "0"])
def test_watch_from_now_starts_with_synthetic_added(kubeapi: FakeKubeAPI, start: str):
    kubeapi.create("pods", pod("a"))
    kubeapi.create("pods", pod("b"))
    w = WatchReader(kubeapi, f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={start}")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in w.collect(2)] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]
    kubeapi.create("pods", pod("c"))
    ev = w.next()
    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "c")
    w.close()


def test_watch_with_selector_sees_objects_enter_and_leave(kubeapi: FakeKubeAPI):
    rv = kubeapi.resource_version
    w = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb")
    kubeapi.create("pods", pod("a"))
    kubeapi.patch("pods", "a", {"metadata": {"labels": {"app": "web"}}}, "default")
    kubeapi.patch("pods", "a", {"metadata": {"labels": {"v": "2"}}}, "default")
    kubeapi.patch("pods", "a", {"metadata": {"labels": {"app": "db"}}}, "default")
    kubeapi.delete("pods", "a", "default")
    evs = w.collect(3)
    assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]
    assert evs[2]["object"]["metadata"]["labels"]["app"] == "web"  # the last state that matched
    assert int(evs[2]["object"]["metadata"]["resourceVersion"]) == rv + 4
    w.expect_nothing(0.2)
    w.close()


def test_watch_field_selector_on_events(kubeapi: FakeKubeAPI):
    w = WatchReader(kubeapi, "/api/v1/events?watch=1&fieldSelector=reason%3DPulled")
    kubeapi.create("events", event("e1", reason="Pulling"))
    kubeapi.create("events", event("e2", reason="Pulled"))
    ev = w.next()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "e2"
    w.close()
    bad = Raw(kubeapi)("GET", "/api/v1/events?watch=1&fieldSelector=bogus%3D1")
    assert bad.status_code == 400 and bad.json()["message"] == "field label not supported: bogus"


def test_watch_timeout_seconds_ends_stream(kubeapi: FakeKubeAPI):
    t0 = time.monotonic()
    w = WatchReader(kubeapi, "/api/v1/pods?watch=1&timeoutSeconds=1")
    assert w.next(timeout=5) is None  # the stream ended by itself
    assert w.error is None
    assert time.monotonic() - t0 >= 0.9


def test_too_old_watch_gets_error_event(kubeapi: FakeKubeAPI):
    rv = kubeapi.resource_version
    kubeapi.create("pods", pod("a"))
    kubeapi.compact()
    w = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    ev = w.next()
    assert ev == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {rv} ({rv + 1})",
            "reason": "Expired",
            "code": 410,
        },
    }
    assert w.next() is None


def test_compaction_window(kubeapi: FakeKubeAPI):
    small = FakeKubeAPI(compaction_window=3).start()
    try:
        rv = small.resource_version
        for i in range(5):
            small.create("pods", pod(f"p{i}"))
        too_old = WatchReader(small, f"/api/v1/pods?watch=1&resourceVersion={rv}")
        assert too_old.next()["type"] == "ERROR"
        ok = WatchReader(small, f"/api/v1/pods?watch=1&resourceVersion={rv + 2}")
        assert [e["object"]["metadata"]["name"] for e in ok.collect(3)] == ["p2", "p3", "p4"]
        ok.close()
    finally:
        small.close()


def test_bookmarks(kubeapi: FakeKubeAPI):
    kubeapi.bookmark_interval = 0.1
    rv = kubeapi.resource_version
    w = WatchReader(kubeapi, f"/api/v1/events?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")
    ev = w.next()
    assert ev == {
        "type": "BOOKMARK",
        "object": {"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}},
    }
    kubeapi.create("pods", pod("a"))  # another resource: bookmarks still advance to the global RV
    ev = wait_for(
        lambda: (e := w.next()) and e["object"]["metadata"]["resourceVersion"] == str(rv + 1) and e,
        what="bookmark at the new RV",
    )
    assert ev["type"] == "BOOKMARK"
    w.close()
    plain = WatchReader(kubeapi, f"/api/v1/events?watch=1&resourceVersion={rv}")
    plain.expect_nothing(0.3)  # no bookmarks unless asked for
    plain.close()


def test_event_ttl_deletes_with_watch_notification():
    api = FakeKubeAPI(event_ttl_seconds=3600).start()
    try:
        api.create("events", event("old"))
        api.create("pods", pod("p"))
        w = WatchReader(api, f"/api/v1/events?watch=1&resourceVersion={api.resource_version}")
        api.set_event_ttl(0.2)
        ev = w.next()
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "old")
        assert api.list("events") == [] and len(api.list("pods")) == 1
        api.create("events", event("new"))
        assert w.next()["type"] == "ADDED"
        assert w.next()["type"] == "DELETED"
        w.close()
    finally:
        api.close()


def test_namespace_deletion_removes_contents(kubeapi: FakeKubeAPI, raw: Raw):
    raw("POST", "/api/v1/namespaces", {"metadata": {"name": "gone"}})
    raw("POST", "/api/v1/namespaces/gone/pods", pod("a", "gone"))
    w = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={kubeapi.resource_version}")
    r = raw("DELETE", "/api/v1/namespaces/gone")
    assert r.status_code == 200 and r.json()["status"]["phase"] == "Terminating"
    assert w.next()["type"] == "DELETED"
    assert raw("GET", "/api/v1/namespaces/gone").status_code == 404
    w.close()
