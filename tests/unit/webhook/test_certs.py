"""`pulltag certs` / `pulltag.certs.generate`: files, modes, SANs, renewal rules, generate.sh."""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pulltag.certs import CertArgumentError, generate

ROOT = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(c: x509.Certificate) -> list[str]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        *ext.get_values_for_type(x509.DNSName),
        *(str(i) for i in ext.get_values_for_type(x509.IPAddress)),
    ]


def test_generates_a_p256_ca_and_leaf_with_the_service_names(tmp_path: Path) -> None:
    result = generate(
        tmp_path, service="hook", namespace="ns", extra_sans=["localhost", "127.0.0.1"], now=NOW
    )
    assert result.ca_created and result.leaf_created
    ca, leaf = cert(tmp_path / "ca.crt"), cert(tmp_path / "tls.crt")
    assert sans(leaf) == [
        "hook",
        "hook.ns",
        "hook.ns.svc",
        "hook.ns.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ]
    for c in (ca, leaf):
        key = c.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert ca.not_valid_after_utc == NOW + dt.timedelta(days=3650)


def test_files_modes_and_manifests(tmp_path: Path) -> None:
    generate(tmp_path, service="hook", namespace="ns", secret_name="hook-tls", now=NOW)
    for name in ("ca.key", "tls.key", "secret.yaml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    secret = yaml.safe_load((tmp_path / "secret.yaml").read_text())
    assert secret["kind"] == "Secret" and secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "hook-tls", "namespace": "ns"}
    assert base64.b64decode(secret["data"]["tls.crt"]) == (tmp_path / "tls.crt").read_bytes()
    assert base64.b64decode(secret["data"]["tls.key"]) == (tmp_path / "tls.key").read_bytes()
    bundle = (tmp_path / "cabundle.txt").read_text().strip()
    assert base64.b64decode(bundle) == (tmp_path / "ca.crt").read_bytes()
    patches = list(yaml.safe_load_all((tmp_path / "webhook-cabundle-patch.yaml").read_text()))
    assert [(p["kind"], p["metadata"]["name"]) for p in patches] == [
        ("MutatingWebhookConfiguration", "annotate.pulltag.dev"),
        ("ValidatingWebhookConfiguration", "record.pulltag.dev"),
    ]
    for p in patches:
        assert p["webhooks"] == [{"name": p["metadata"]["name"], "clientConfig": {"caBundle": bundle}}]


def test_rerun_keeps_a_valid_ca_and_leaf(tmp_path: Path) -> None:
    generate(tmp_path, now=NOW)
    before = {n: (tmp_path / n).read_bytes() for n in ("ca.crt", "ca.key", "tls.crt", "tls.key")}
    result = generate(tmp_path, now=NOW + dt.timedelta(days=300))
    assert not result.ca_created and not result.leaf_created
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def test_leaf_renews_within_the_threshold_under_the_same_ca(tmp_path: Path) -> None:
    generate(tmp_path, now=NOW)
    ca_before = (tmp_path / "ca.crt").read_bytes()
    old_serial = cert(tmp_path / "tls.crt").serial_number
    result = generate(tmp_path, now=NOW + dt.timedelta(days=340), renew_within_days=30)
    assert result.leaf_created and not result.ca_created
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    assert cert(tmp_path / "tls.crt").serial_number != old_serial
    cert(tmp_path / "tls.crt").verify_directly_issued_by(cert(tmp_path / "ca.crt"))


def test_leaf_renews_when_the_names_change(tmp_path: Path) -> None:
    generate(tmp_path, now=NOW)
    result = generate(tmp_path, namespace="other", now=NOW)
    assert result.leaf_created and not result.ca_created
    assert "pulltag-webhook.other.svc" in sans(cert(tmp_path / "tls.crt"))


def test_force_and_a_broken_ca_regenerate_everything(tmp_path: Path) -> None:
    generate(tmp_path, now=NOW)
    ca_before = (tmp_path / "ca.crt").read_bytes()
    assert generate(tmp_path, force=True, now=NOW).ca_created
    assert (tmp_path / "ca.crt").read_bytes() != ca_before
    (tmp_path / "ca.key").write_text("garbage")
    result = generate(tmp_path, now=NOW)
    assert result.ca_created and result.leaf_created
    cert(tmp_path / "tls.crt").verify_directly_issued_by(cert(tmp_path / "ca.crt"))


def test_generate_sh_calls_pulltag_certs(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    argv = [str(ROOT / "certs" / "generate.sh"), "--out", str(out), "--service", "svc", "--namespace", "ns"]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, "PULLTAG_CONFIG": ""}
    )
    assert done.returncode == 0, done.stderr
    assert "CA:   created" in done.stdout
    assert "svc.ns.svc.cluster.local" in sans(cert(out / "tls.crt"))
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "CA:   kept" in again.stdout and "leaf: kept" in again.stdout


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days"):
        generate(tmp_path, days=0)


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("--namespace", {"namespace": "Bad_NS!"}),
        ("--namespace", {"namespace": "UPPER"}),
        ("--namespace", {"namespace": "-lead"}),
        ("--namespace", {"namespace": "a" * 64}),
        ("--namespace", {"namespace": "a.b"}),  # a namespace is a label, not a subdomain
        ("--service", {"service": "web_hook"}),
        ("--service", {"service": ""}),
        ("--secret-name", {"secret_name": "tls..x"}),
        ("--secret-name", {"secret_name": "TLS"}),
    ],
)
def test_names_must_be_dns1123(tmp_path: Path, option: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(CertArgumentError) as info:
        generate(tmp_path / "out", now=NOW, **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{option} ")
    assert "DNS-1123" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written for a refused name


def test_valid_names_pass(tmp_path: Path) -> None:
    result = generate(
        tmp_path, service="a" * 63, namespace="platform-tools", secret_name="tls.web-1", now=NOW
    )
    assert result.sans[1] == "a" * 63 + ".platform-tools"


def test_cli_refuses_a_bad_namespace_with_one_line(tmp_path: Path) -> None:
    proc = _certs(tmp_path, "--namespace", "Bad_NS!")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pulltag certs: --namespace 'Bad_NS!' is not a DNS-1123 label: lower-case letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters"
    ]
    assert not (tmp_path / "out").exists()


def test_a_ca_ending_first_caps_the_leaf_and_says_so(tmp_path: Path) -> None:
    result = generate(tmp_path, days=365, ca_days=100, now=NOW)
    ca_end = cert(tmp_path / "ca.crt").not_valid_after_utc
    assert result.leaf_not_after == ca_end == result.capped_by_ca
    # the CLI says it in one warning line and still succeeds
    proc = _certs(tmp_path, "--days", "365", "--ca-days", "100", "--force")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("pulltag certs: warning")]
    assert len(warnings) == 1
    assert "the CA expires" in warnings[0] and "365 days" in warnings[0] and "--ca-days" in warnings[0]


def test_no_warning_when_the_ca_outlives_the_leaf(tmp_path: Path) -> None:
    assert generate(tmp_path, days=365, ca_days=3650, now=NOW).capped_by_ca is None
    proc = _certs(tmp_path, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "pulltag certs: warning" not in proc.stderr


def _certs(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pulltag", "certs", "--out", str(tmp_path / "out"), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, "PULLTAG_CONFIG": ""}
    )
