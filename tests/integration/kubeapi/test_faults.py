"""Fault injection: closed and stalled watches, failing requests, compaction, stop/restart."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.harness.kubeapi import FakeKubeAPI

from ._util import Raw, WatchReader, pod, wait_for


def test_close_watches_gracefully_and_abruptly(kubeapi: FakeKubeAPI):
    a = WatchReader(kubeapi, "/api/v1/pods?watch=1")
    b = WatchReader(kubeapi, "/api/v1/events?watch=1")
    wait_for(lambda: kubeapi.open_watches == 2, what="2 watches")
    assert kubeapi.close_watches() == 2
    assert a.next() is None and b.next() is None
    assert a.ended_cleanly and b.ended_cleanly
    wait_for(lambda: kubeapi.open_watches == 0, what="watches gone")

    c = WatchReader(kubeapi, "/api/v1/pods?watch=1")
    wait_for(lambda: kubeapi.open_watches == 1, what="watch")
    kubeapi.close_watches(abrupt=True)
    assert c.next() is None
    assert not c.ended_cleanly and c.error is not None


def test_client_watch_resumes_after_close(core: client.CoreV1Api, kubeapi: FakeKubeAPI):
    """kubernetes.watch.Watch reconnects from the last resourceVersion it saw: nothing lost."""
    rv = core.list_namespaced_pod("default").metadata.resource_version
    seen: list[str] = []
    w = watch.Watch()

    def run() -> None:
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=rv):
            seen.append(ev["object"].metadata.name)
            if len(seen) == 2:
                w.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: kubeapi.open_watches == 1, what="watch")
    kubeapi.create("pods", pod("a"))
    wait_for(lambda: seen == ["a"], what="first event")
    kubeapi.close_watches()
    kubeapi.create("pods", pod("b"))  # happens while the client reconnects
    t.join(5)
    assert seen == ["a", "b"]
    watches = [r for r in kubeapi.request_log if "watch=true" in r.path]
    assert len(watches) == 2 and f"resourceVersion={int(rv) + 1}" in watches[1].path


def test_stall_and_unstall(kubeapi: FakeKubeAPI):
    w = WatchReader(kubeapi, "/api/v1/pods?watch=1&timeoutSeconds=30")
    wait_for(lambda: kubeapi.open_watches == 1, what="watch")
    assert kubeapi.stall_watches() == 1
    # Silence, although things happen.
    kubeapi.create("pods", pod("a"))
    kubeapi.create("pods", pod("b"))
    w.expect_nothing(0.3)
    fresh = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={kubeapi.resource_version - 2}")
    assert [e["object"]["metadata"]["name"] for e in fresh.collect(2)] == ["a", "b"]  # new streams flow
    fresh.close()
    kubeapi.unstall_watches()
    evs = w.collect(2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "a"), ("ADDED", "b")]
    w.close()


def test_fail_next_requests(kubeapi: FakeKubeAPI):
    raw = Raw(kubeapi)
    kubeapi.fail_requests(count=2)
    r1, r2, r3 = (raw("GET", "/api/v1/pods") for _ in range(3))
    assert (r1.status_code, r2.status_code, r3.status_code) == (500, 500, 200)
    assert r1.json()["reason"] == "InternalError" and r1.json()["message"].startswith(
        "Internal error occurred"
    )

    kubeapi.fail_requests(count=1, status=429, retry_after=3)
    r = raw("GET", "/api/v1/pods")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.json()["reason"] == "TooManyRequests" and r.json()["details"] == {"retryAfterSeconds": 3}
    assert raw("GET", "/api/v1/pods").status_code == 200

    kubeapi.fail_requests(path_contains="/events")
    assert raw("GET", "/api/v1/pods").status_code == 200
    assert raw("GET", "/api/v1/events").status_code == 500
    assert raw("GET", "/api/v1/events?watch=1").status_code == 500
    kubeapi.clear_faults()
    assert raw("GET", "/api/v1/events").status_code == 200


def test_fail_a_share_of_requests(kubeapi: FakeKubeAPI):
    api = FakeKubeAPI(seed=7).start()
    try:
        raw = Raw(api)
        api.fail_requests(share=0.5)
        codes = [raw("GET", "/api/v1/namespaces").status_code for _ in range(60)]
        assert set(codes) == {200, 500}
        assert 10 < codes.count(500) < 50
        api.fail_requests(share=0.0)
        assert all(raw("GET", "/api/v1/namespaces").status_code == 200 for _ in range(10))
    finally:
        api.close()


def test_client_sees_injected_faults(core: client.CoreV1Api, kubeapi: FakeKubeAPI):
    kubeapi.fail_requests(count=1, status=500)
    with pytest.raises(ApiException) as ei:
        core.list_namespaced_pod("default")
    assert ei.value.status == 500
    assert core.list_namespaced_pod("default").items == []


def test_stop_and_restart_keep_state_and_port(kubeapi: FakeKubeAPI, core: client.CoreV1Api):
    core.create_namespaced_pod("default", pod("a"))
    port, rv = kubeapi.port, kubeapi.resource_version
    w = WatchReader(kubeapi, "/api/v1/pods?watch=1")
    assert w.next()["type"] == "ADDED"
    kubeapi.stop()
    assert w.next() is None and not w.ended_cleanly  # connections dropped
    with pytest.raises(Exception):  # noqa: B017 - connection refused, in whatever form urllib3 wraps it
        Raw(kubeapi)("GET", "/api/v1/pods", timeout=2)
    kubeapi.restart()
    assert kubeapi.port == port and kubeapi.resource_version == rv
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["a"]
    w2 = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    kubeapi.create("pods", pod("b"))
    assert w2.next()["object"]["metadata"]["name"] == "b"
    w2.close()


def test_compact_while_watching(kubeapi: FakeKubeAPI):
    """Compaction does not disturb up-to-date watchers; a too-old resume gets 410."""
    rv = kubeapi.resource_version
    w = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    kubeapi.create("pods", pod("a"))
    assert w.next()["type"] == "ADDED"
    kubeapi.compact()
    kubeapi.create("pods", pod("b"))
    assert w.next()["object"]["metadata"]["name"] == "b"
    w.close()
    old = WatchReader(kubeapi, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    assert old.next()["object"]["code"] == 410
