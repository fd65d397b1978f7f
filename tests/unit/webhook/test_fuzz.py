"""Nothing a client sends produces a 5xx: 10,000 generated bodies against the real app."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from flask import Flask
from hypothesis import given

from pulltag.config import RegistrySettings, Settings
from tests.unit.webhook.fuzz import bodies, fuzz_settings
from tests.unit.webhook.stores import ScriptedStore
from webhook.app import create_app
from webhook.metrics import Metrics

SETTINGS = Settings(registries=(RegistrySettings(host="harbor.example.com"),))


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    app = create_app(SETTINGS, ScriptedStore(), Metrics())
    yield app
    app.extensions["pulltag"].recorder.close()


class CrashLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.slow
@pytest.mark.hypothesis  # its @given is inside: `make explore` selects it by this mark
def test_ten_thousand_bodies_never_give_a_5xx(app: Flask) -> None:
    client = app.test_client()
    crashes = CrashLog()
    logger = logging.getLogger("webhook")
    logger.addHandler(crashes)
    # 10,000 refusal warnings would only slow the run down; crashes are logged at ERROR and still caught.
    previous_level = logger.level
    logger.setLevel(logging.ERROR)
    seen: dict[int, int] = {}
    try:

        @fuzz_settings(10_000)
        @given(body=bodies)
        def check(body: bytes) -> None:
            path = "/validate" if len(body) % 2 else "/mutate"
            resp = client.post(path, data=body, content_type="application/json")
            assert resp.status_code in (200, 400, 413), (resp.status_code, body[:200])
            answer = resp.get_json()
            assert isinstance(answer, dict)
            seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
            if resp.status_code == 200:
                review = json.loads(body)
                assert answer["apiVersion"] == review["apiVersion"]
                assert answer["kind"] == "AdmissionReview"
                assert answer["response"]["uid"] == review["request"]["uid"]
                assert answer["response"]["allowed"] is True
            else:
                assert answer["status"] == resp.status_code and answer["error"]

        check()
    finally:
        logger.removeHandler(crashes)
        logger.setLevel(previous_level)
    assert crashes.records == []
    assert sum(seen.values()) >= 10_000
    # the generator must reach both the accepted and the refused paths to prove anything
    assert seen.get(200, 0) > 500 and seen.get(400, 0) > 500
