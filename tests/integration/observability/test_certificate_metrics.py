"""The webhook's certificate expiry metrics, from the real `pulltag webhook` (gunicorn, 2 workers, TLS) with
certificates made by `pulltag.certs`: the values are the served certificate's and its CA's notAfter, and
they follow a rotation (new CA and leaf written over the mounted files) once the server reloads them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness.procs import wait_for
from tests.harness.webhook import WebhookServer, make_certs
from tests.harness.world import metric_value

CERT = "pulltag_webhook_certificate_expiry_timestamp_seconds"
CA = "pulltag_webhook_ca_expiry_timestamp_seconds"


def not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebhookServer]:
    certs = make_certs(tmp_path / "certs", days=300, ca_days=1000)
    webhook = WebhookServer(
        tmp_path / "webhook", f"sqlite:///{tmp_path}/pulltag.db", certs=certs, cert_reload_seconds=0.2
    )
    webhook.start()
    yield webhook
    assert webhook.stop() == 0


def scrape(webhook: WebhookServer) -> str:
    status, body = webhook.get("/metrics")
    assert status == 200
    return body.decode()


def test_expiry_of_the_served_certificate_and_its_ca(server: WebhookServer) -> None:
    text = scrape(server)
    leaf, ca = not_after(server.cert_dir / "tls.crt"), not_after(server.cert_dir / "ca.crt")
    assert metric_value(text, CERT) == pytest.approx(leaf)
    assert metric_value(text, CA) == pytest.approx(ca)
    # what was asked for: a 300-day leaf under a 1000-day CA (two different dates, each in its gauge)
    now = dt.datetime.now(dt.UTC).timestamp()
    assert 299 * 86400 < leaf - now <= 300 * 86400
    assert 999 * 86400 < ca - now <= 1000 * 86400
    # one sample each, whichever worker answers (multiprocess values are merged)
    for _ in range(4):
        text = scrape(server)
        assert [line.split()[0] for line in text.splitlines() if line.startswith(CERT)] == [CERT]
        assert metric_value(text, CERT) == pytest.approx(leaf)


def test_the_metrics_follow_a_rotation(server: WebhookServer) -> None:
    old_leaf = not_after(server.cert_dir / "tls.crt")
    old_ca = not_after(server.cert_dir / "ca.crt")
    # A new CA and a 20-day leaf, written over the files the server reads (as a Secret update would).
    make_certs(server.cert_dir, days=20, ca_days=500, force=True)
    new_leaf, new_ca = not_after(server.cert_dir / "tls.crt"), not_after(server.cert_dir / "ca.crt")
    assert new_leaf < old_leaf and new_ca < old_ca

    def on_new_certificate() -> bool:
        # The client trusts only the new CA: a scrape succeeds once the answering worker serves the new
        # certificate. Each worker reloads on its own, so several scrapes in a row must all show the new
        # dates, whichever worker answers (the gauges keep the newest load, not the master's first one).
        for _ in range(6):
            text = scrape(server)
            if metric_value(text, CERT) != pytest.approx(new_leaf) or metric_value(text, CA) != pytest.approx(
                new_ca
            ):
                return False
        return True

    wait_for(on_new_certificate, 20, "the expiry metrics of the new certificate on every worker")
