"""Which dates the webhook reports for its certificate and CA (webhook.tls.certificate_dates), and the
gauges that carry them (webhook.metrics.CertificateMetrics)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pulltag.certs import make_ca, make_leaf
from tests.harness.webhook import make_certs
from webhook.metrics import CertificateMetrics
from webhook.tls import CertificateDates, CertReloader, certificate_dates

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def ts(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()


def not_after(path: Path) -> float:
    return ts(x509.load_pem_x509_certificate(path.read_bytes()))


def test_leaf_and_the_ca_from_ca_crt() -> None:
    ca, ca_key = make_ca(3650, NOW)
    leaf, _ = make_leaf(ca, ca_key, ["svc"], 365, NOW)
    assert certificate_dates(pem(leaf), pem(ca)) == CertificateDates(ts(leaf), ts(ca))


def test_the_ca_from_the_chain_when_there_is_no_ca_file() -> None:
    ca, ca_key = make_ca(3650, NOW)
    leaf, _ = make_leaf(ca, ca_key, ["svc"], 365, NOW)
    assert certificate_dates(pem(leaf, ca), None) == CertificateDates(ts(leaf), ts(ca))


def test_during_a_ca_rollover_the_ca_that_signed_the_leaf_counts() -> None:
    # Both CAs in ca.crt, with the same name: the signature tells which one issued the served leaf.
    old, old_key = make_ca(400, NOW - dt.timedelta(days=300))
    new, new_key = make_ca(3650, NOW)
    assert old.subject == new.subject
    under_old, _ = make_leaf(old, old_key, ["svc"], 30, NOW)
    under_new, _ = make_leaf(new, new_key, ["svc"], 365, NOW)
    for bundle in (pem(old, new), pem(new, old)):
        assert certificate_dates(pem(under_old), bundle).ca_not_after == ts(old)
        assert certificate_dates(pem(under_new), bundle).ca_not_after == ts(new)


@pytest.mark.parametrize("ca_pem", [None, b"", b"not a certificate"])
def test_no_known_ca_leaves_the_ca_date_unknown(ca_pem: bytes | None) -> None:
    ca, ca_key = make_ca(3650, NOW)
    leaf, _ = make_leaf(ca, ca_key, ["svc"], 365, NOW)
    assert certificate_dates(pem(leaf), ca_pem) == CertificateDates(ts(leaf), None)


def test_another_ca_is_not_taken_for_the_issuer() -> None:
    ca, ca_key = make_ca(3650, NOW)
    stranger, _ = make_ca(100, NOW)
    leaf, _ = make_leaf(ca, ca_key, ["svc"], 365, NOW)
    assert certificate_dates(pem(leaf), pem(stranger)).ca_not_after is None


def test_no_certificate_is_an_error() -> None:
    with pytest.raises(ValueError):
        certificate_dates(b"garbage", None)


def test_gauges_carry_the_dates_and_a_missing_ca_date_is_no_sample() -> None:
    metrics = CertificateMetrics()
    metrics.record(CertificateDates(1_800_000_000.0, None))
    get = metrics.registry.get_sample_value
    assert get("pulltag_webhook_certificate_expiry_timestamp_seconds") == 1_800_000_000.0
    assert get("pulltag_webhook_ca_expiry_timestamp_seconds") is None  # never 0, which would read "expired"
    metrics.record(CertificateDates(1_700_000_000.0, 2_000_000_000.0))
    assert get("pulltag_webhook_certificate_expiry_timestamp_seconds") == 1_700_000_000.0
    assert get("pulltag_webhook_ca_expiry_timestamp_seconds") == 2_000_000_000.0


def test_the_reloader_reports_the_dates_of_what_it_serves(tmp_path: Path) -> None:
    live = make_certs(tmp_path / "live", days=100)
    reported: list[CertificateDates] = []
    reloader = CertReloader(
        str(live / "tls.crt"), str(live / "tls.key"), interval=0.0, on_load=reported.append
    )
    first = CertificateDates(not_after(live / "tls.crt"), not_after(live / "ca.crt"))
    assert reported == [first]

    # A certificate whose key does not match is not served, so its dates are not reported either.
    other = make_certs(tmp_path / "other", days=10)
    shutil.copy(other / "tls.crt", live / "tls.crt")
    reloader.context()
    assert reported == [first]

    # Once the pair loads, its dates (and its own CA's) are reported.
    renewed = make_certs(tmp_path / "renewed", days=50, ca_days=200)
    for name in ("ca.crt", "tls.key", "tls.crt"):
        shutil.copy(renewed / name, live / name)
    reloader.context()
    assert reported[1:] == [CertificateDates(not_after(renewed / "tls.crt"), not_after(renewed / "ca.crt"))]
