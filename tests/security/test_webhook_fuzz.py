"""The webhook survives hostile bodies with no 5xx.

The 10,000-body run is `tests/unit/webhook/test_fuzz.py` (the Flask app in-process). Here a short sample
of the same strategies goes to the real thing — gunicorn over TLS with an SQLite store, as deployed — so
the serving layer (body limits, content types, worker errors) is covered as well, cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import given

from tests.harness.webhook import WebhookServer
from tests.unit.webhook.fuzz import bodies, fuzz_settings

pytestmark = pytest.mark.timeout(120)

MAX_BODY_BYTES = 4 * 1024 * 1024  # webhook.max_body_bytes, the default


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServer]:
    work: Path = tmp_path_factory.mktemp("security-webhook")
    server = WebhookServer(
        work, f"sqlite:///{work / 'store.db'}", config={"registries": [{"host": "harbor.example.com"}]}
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.hypothesis  # its @given is inside: `make explore` selects it by this mark
def test_fuzzed_bodies_over_tls_never_give_a_5xx(webhook: WebhookServer) -> None:
    session = webhook.session()
    statuses: dict[int, int] = {}

    @fuzz_settings(150)
    @given(body=bodies)
    def check(body: bytes) -> None:
        path = "/validate" if len(body) % 2 else "/mutate"
        try:
            response = session.post(
                webhook.url(path), data=body, headers={"Content-Type": "application/json"}, timeout=10
            )
        except requests.ConnectionError:
            # Over the limit the webhook answers 413 from Content-Length and closes without reading the
            # rest; a client still sending may see the connection end before the answer. Not a 5xx.
            assert len(body) > MAX_BODY_BYTES, body[:200]
            statuses[0] = statuses.get(0, 0) + 1
            return
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, body[:200])
        assert isinstance(response.json(), dict)

    try:
        check()
    finally:
        session.close()
    assert statuses.get(200, 0) > 0 and sum(statuses.values()) >= 100, statuses
    assert webhook.healthy()
    assert "Traceback" not in webhook.log_text()
