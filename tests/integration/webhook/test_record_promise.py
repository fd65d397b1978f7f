"""README's promise about the admission record: a pod counted `recorded` has its record committed in the
store before /validate answers, so a reader finds it at once and a killed webhook loses none of them."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable

from pulltag.store import Store
from tests.harness.webhook import pod_review
from tests.integration.webhook.conftest import StartServer


def _recorded(metrics: str) -> float:
    pattern = r'pulltag_admission_requests_total\{[^}]*outcome="recorded"[^}]*webhook="validate"[^}]*\} (\S+)'
    return sum(float(v) for v in re.findall(pattern, metrics))


def test_a_recorded_answer_means_a_committed_record(
    start_server: StartServer, store_url: str, store_for: Callable[[str], Store]
) -> None:
    server = start_server(store_url, workers=2)
    reader = store_for(store_url)  # another connection, as the listener has
    uids = [f"promise-{n}" for n in range(40)]
    for uid in uids:
        review = pod_review(
            uid=f"req-{uid}", pod_uid=uid, containers={"app": "registry.local:5000/shop/web:1"}
        )
        status, answer = server.post_json("/validate", review)
        assert status == 200 and answer["response"]["allowed"] is True
        record = reader.get_admission(uid)  # right after the answer: no waiting
        assert record is not None, f"{uid} answered but not in the store"
        assert record.images == {"containers": {"app": "registry.local:5000/shop/web:1"}}
    status, body = server.get("/metrics")
    assert status == 200 and _recorded(body.decode()) == len(uids)

    assert server.process is not None
    server.process.signal(signal.SIGKILL)  # no graceful stop: a record still queued would be lost here
    assert server.process.proc is not None
    server.process.proc.wait(timeout=10)
    after = store_for(store_url)
    assert [uid for uid in uids if after.get_admission(uid) is None] == []
