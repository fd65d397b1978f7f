"""The Flask app through its test client: status codes, bodies, the store budget, metrics."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pulltag.config import RegistrySettings, Settings, WebhookSettings
from pulltag.store.base import AdmissionRecord, StoreError, StoreUnavailable
from tests.harness.webhook import pod_review
from tests.unit.webhook.reviews import ephemeral_review
from tests.unit.webhook.stores import ScriptedStore
from webhook.app import create_app, read_body
from webhook.metrics import Metrics
from webhook.recorder import Recorder, WriteResult

SETTINGS = Settings(
    registries=(RegistrySettings(host="harbor.example.com"),),
    webhook=WebhookSettings(store_budget_seconds=0.2, max_body_bytes=64 * 1024),
)


@pytest.fixture
def store() -> ScriptedStore:
    return ScriptedStore()


@pytest.fixture
def app(store: ScriptedStore) -> Iterator[Flask]:
    app = create_app(SETTINGS, store, Metrics())
    yield app
    if store.gate is not None:
        store.gate.set()
    app.extensions["pulltag"].recorder.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def metric(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def post(client: FlaskClient, path: str, payload: Any) -> tuple[int, Any]:
    resp = client.post(path, data=json.dumps(payload), content_type="application/json")
    return resp.status_code, resp.get_json()


def test_validate_records_and_answers(client: FlaskClient, store: ScriptedStore) -> None:
    review = pod_review(pod_uid="u-1", containers={"app": "harbor.example.com/shop/web:1"})
    status, body = post(client, "/validate", review)
    assert status == 200
    assert body == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "req-1", "allowed": True},
    }
    assert store.records["u-1"].images == {"containers": {"app": "harbor.example.com/shop/web:1"}}
    assert metric(client, "pulltag_admission_requests_total", webhook="validate", outcome="recorded") == 1


def test_validate_dry_run_and_ignored_write_nothing(client: FlaskClient, store: ScriptedStore) -> None:
    post(client, "/validate", pod_review(pod_uid="a", dry_run=True))
    post(client, "/validate", pod_review(pod_uid="b", labels={"pulltag.dev/ignore": "true"}))
    assert store.records == {}
    assert metric(client, "pulltag_admission_requests_total", outcome="dry_run") == 1
    assert metric(client, "pulltag_admission_requests_total", outcome="ignored") == 1


def test_kubectl_debug_rewrites_the_record_with_the_ephemeral_container(
    client: FlaskClient, store: ScriptedStore
) -> None:
    pod: dict[str, Any] = {"pod_uid": "u-1", "containers": {"app": "harbor.example.com/shop/web:1"}}
    post(client, "/validate", pod_review(**pod))
    debug = ephemeral_review(added={"debugger": "harbor.example.com/tools/debug:1"}, **pod)
    status, body = post(client, "/mutate", debug)
    assert (status, body["response"]) == (200, {"uid": "req-1", "allowed": True})  # no patch
    status, body = post(client, "/validate", debug)
    assert (status, body["response"]) == (200, {"uid": "req-1", "allowed": True})
    assert store.records["u-1"].images == {
        "containers": {"app": "harbor.example.com/shop/web:1"},
        "ephemeralContainers": {"debugger": "harbor.example.com/tools/debug:1"},
    }
    assert metric(client, "pulltag_admission_requests_total", webhook="validate", outcome="recorded") == 2
    assert (
        metric(client, "pulltag_admission_requests_total", webhook="mutate", outcome="ephemeral_unpatched")
        == 1
    )


def test_mutate_answers_with_a_patch(client: FlaskClient) -> None:
    status, body = post(client, "/mutate", pod_review(api_version="admission.k8s.io/v1beta1"))
    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1beta1"
    assert body["response"]["patchType"] == "JSONPatch"


@pytest.mark.parametrize(
    ("failure", "result"),
    [
        (lambda: StoreUnavailable("redis://:hunter2@db:6379/0", "connection refused"), "unavailable"),
        (lambda: StoreError("disk full"), "error"),
        (lambda: RuntimeError("backend bug"), "error"),
    ],
)
def test_a_store_failure_still_allows_and_is_counted(
    client: FlaskClient, store: ScriptedStore, failure: Any, result: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.failure = failure
    status, body = post(client, "/validate", pod_review())
    assert status == 200 and body["response"]["allowed"] is True
    assert metric(client, "pulltag_store_errors_total", operation="put_admission") == 1
    assert metric(client, "pulltag_admission_requests_total", outcome=f"store_{result}") == 1
    lines = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(lines) == 1 and f"result={result}" in lines[0]
    assert "hunter2" not in caplog.text


def test_a_hanging_store_costs_at_most_the_budget(client: FlaskClient, store: ScriptedStore) -> None:
    store.gate = threading.Event()
    started = time.monotonic()
    status, body = post(client, "/validate", pod_review(pod_uid="slow"))
    elapsed = time.monotonic() - started
    assert status == 200 and body["response"]["allowed"] is True
    assert 0.2 <= elapsed < 1.0
    assert metric(client, "pulltag_admission_requests_total", outcome="store_timeout") == 1
    # the write finishes later in the background and still lands
    store.gate.set()
    deadline = time.monotonic() + 5
    while "slow" not in store.records and time.monotonic() < deadline:
        store.entered.acquire(timeout=0.05)
    assert "slow" in store.records


def test_while_the_store_hangs_the_pool_stays_bounded(app: Flask, store: ScriptedStore) -> None:
    store.gate = threading.Event()
    recorder = app.extensions["pulltag"].recorder
    recorder._budget = 0.01  # keep the test short; the bound is what is under test
    client = app.test_client()
    for i in range(40):
        status, body = post(client, "/validate", pod_review(pod_uid=f"u{i}"))
        assert status == 200 and body["response"]["allowed"] is True
    # 32 writes were accepted (1 being written, 31 queued); the other 8 were skipped at once
    assert metric(client, "pulltag_admission_requests_total", outcome="store_busy") == 8
    assert metric(client, "pulltag_admission_requests_total", outcome="store_timeout") == 32
    assert metric(client, "pulltag_store_errors_total", operation="put_admission") == 40
    assert recorder.pending() == 32
    store.gate.set()
    # the queued writes still land, in batches, and the queue drains
    wait_until(lambda: recorder.pending() == 0 and len(store.records) == 32, "the queued writes to land")
    assert store.batches[0] == 1 and sum(store.batches) == 32 and len(store.batches) < 32


def admit_behind_a_held_write(store: ScriptedStore, uids: list[str]) -> dict[str, WriteResult]:
    """Admit "first" while the store holds its write, queue `uids` behind it, then let the store go;
    the result of each admission, once all are answered."""
    recorder = Recorder(store, budget_seconds=10)
    store.gate = threading.Event()
    results: dict[str, WriteResult] = {}

    def admit(uid: str) -> None:
        results[uid], _reason = recorder.put_admission(AdmissionRecord(uid=uid, namespace="ns", name=uid))

    first = threading.Thread(target=admit, args=("first",))
    first.start()
    assert store.entered.acquire(timeout=5)  # the writer is inside the store with the first record
    others = [threading.Thread(target=admit, args=(uid,)) for uid in uids]
    for t in others:
        t.start()
    wait_until(lambda: recorder.pending() == len(uids) + 1, "the records queued behind the first")
    store.gate.set()
    for t in [first, *others]:
        t.join(timeout=10)
    recorder.close()
    return results


def test_writes_arriving_during_a_write_go_in_one_batch(store: ScriptedStore) -> None:
    uids = [f"u{i}" for i in range(10)]
    results = admit_behind_a_held_write(store, uids)
    assert results == dict.fromkeys(["first", *uids], WriteResult.OK)
    assert store.batches == [1, 10]
    assert set(store.records) == {"first", *uids}


def test_a_record_the_store_refuses_costs_only_its_own_write(store: ScriptedStore) -> None:
    store.refused = {"bad"}
    results = admit_behind_a_held_write(store, ["a", "bad", "b"])
    ok = WriteResult.OK
    assert results == {"first": ok, "a": ok, "bad": WriteResult.ERROR, "b": ok}
    assert set(store.records) == {"first", "a", "b"}
    assert store.batches[:2] == [1, 3]  # the batch of three was refused, then written record by record


def test_a_closed_recorder_refuses_at_once(store: ScriptedStore) -> None:
    recorder = Recorder(store, budget_seconds=10)
    recorder.close()
    result, reason = recorder.put_admission(AdmissionRecord(uid="u", namespace="ns", name="p"))
    assert result is WriteResult.ERROR and "closed" in reason
    assert store.records == {}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)  # polling a condition with a deadline


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mutate", "/validate"])
@pytest.mark.parametrize(
    ("data", "content_type", "status", "message"),
    [
        (b"{", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "not valid JSON"),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "nests too deeply"),
        (b"1" * 5000, "application/json", 400, "not valid JSON"),
        (b"[]", "application/json", 400, "must be a JSON object"),
        (
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
            "application/json",
            400,
            "request is missing",
        ),
        (b"{}", "text/plain", 415, "application/json"),
        (b"{}", "", 415, "application/json"),
        (b"x" * (64 * 1024 + 1), "application/json", 413, "exceeds the limit"),
    ],
)
def test_bad_input_is_a_json_4xx(
    client: FlaskClient, path: str, data: bytes, content_type: str, status: int, message: str
) -> None:
    resp = client.post(path, data=data, headers={"Content-Type": content_type} if content_type else {})
    assert resp.status_code == status
    body = resp.get_json()
    assert body["status"] == status and message in body["error"]


def test_a_charset_parameter_is_fine(client: FlaskClient) -> None:
    resp = client.post(
        "/mutate", data=json.dumps(pod_review()), content_type="application/json; charset=utf-8"
    )
    assert resp.status_code == 200


def test_an_oversized_chunked_body_is_refused_after_a_capped_read() -> None:
    class Stream(io.RawIOBase):
        """An endless body that counts what was read from it."""

        read_total = 0

        def read(self, size: int = -1) -> bytes:
            assert size > 0, "the body must be read in bounded chunks"
            self.read_total += size
            return b" " * size

    stream = Stream()
    with pytest.raises(Exception, match="exceeds the limit") as info:
        read_body(stream, None, 1000)  # type: ignore[arg-type]
    assert getattr(info.value, "status", None) == 413
    assert stream.read_total == 1001


def test_a_declared_oversized_body_is_refused_without_reading(client: FlaskClient) -> None:
    class Unreadable(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise AssertionError("the body must not be read")

    resp = client.post(
        "/validate",
        content_type="application/json",
        environ_overrides={"wsgi.input": Unreadable(), "CONTENT_LENGTH": str(10**9)},
    )
    assert resp.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/mutate", 405),
        ("PUT", "/validate", 405),
        ("POST", "/healthz", 405),
        ("GET", "/nope", 404),
        ("DELETE", "/", 404),
    ],
)
def test_routing_errors_are_json(client: FlaskClient, method: str, path: str, status: int) -> None:
    resp = client.open(path, method=method)
    assert resp.status_code == status
    assert resp.get_json()["status"] == status


def test_health_readiness_and_metrics(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}
    post(client, "/mutate", pod_review())
    post(client, "/mutate", [])
    assert metric(client, "pulltag_admission_requests_total", webhook="mutate", outcome="patched") == 1
    assert metric(client, "pulltag_admission_requests_total", webhook="mutate", outcome="bad_request") == 1
    assert metric(client, "pulltag_admission_duration_seconds_count", webhook="mutate") == 2


def test_a_content_type_in_upper_case_with_parameters_is_json(client: FlaskClient) -> None:
    review = json.dumps(pod_review(pod_uid="u-ct"))
    resp = client.post("/validate", data=review, content_type="Application/JSON ; charset=UTF-8")
    assert resp.status_code == 200 and resp.get_json()["response"]["allowed"] is True


def test_a_crash_in_an_admission_view_is_a_json_500_and_logged(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_review: Any) -> Any:
        raise RuntimeError("a bug in the decision")

    monkeypatch.setattr("webhook.app.decide_mutate", broken)
    resp = client.post("/mutate", data=json.dumps(pod_review()), content_type="application/json")
    assert resp.status_code == 500
    assert resp.get_json() == {"status": 500, "error": "internal error"}
    assert "unhandled error in the webhook: RuntimeError" in caplog.text
    assert metric(client, "pulltag_admission_requests_total", webhook="mutate", outcome="error") == 1
