"""How a failed connection is named: the cause is dug out of requests' and urllib3's wrappers."""

from __future__ import annotations

import socket
import ssl

import pytest
import requests

from listener.registry.transport import connection_problem, tls_problem


def _verify_error(code: int, message: str) -> requests.exceptions.SSLError:
    cause = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}"
    )
    cause.verify_code, cause.verify_message = code, message
    middle = OSError("urllib3 wrapper")
    middle.__cause__ = cause
    return requests.exceptions.SSLError(middle)


@pytest.mark.parametrize(
    ("code", "message", "said"),
    [
        (20, "unable to get local issuer certificate", "unknown CA"),
        (19, "self-signed certificate in certificate chain", "unknown CA"),
        (18, "self-signed certificate", "unknown CA"),
        (62, "Hostname mismatch, certificate is not valid for 'r.example'.", "name mismatch"),
        (64, "IP address mismatch, certificate is not valid for '127.0.0.1'.", "name mismatch"),
    ],
)
def test_tls_problem_names_the_cause_and_ca_file(code: int, message: str, said: str) -> None:
    text = tls_problem(_verify_error(code, message), "r.example")
    assert said in text and "ca_file" in text


def test_a_handshake_without_a_verify_error_still_points_at_ca_file() -> None:
    assert "ca_file" in tls_problem(requests.exceptions.SSLError("wrong version number"), "r.example")


def test_dns_refused_and_timeout_are_told_apart() -> None:
    dns = requests.ConnectionError(OSError("wrapper"))
    dns.args[0].__context__ = socket.gaierror(-2, "Name or service not known")
    assert connection_problem(dns, "r.example") == "the name r.example did not resolve (DNS)"
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert connection_problem(refused, "r.example") == "connection refused"
    assert connection_problem(requests.ConnectTimeout("slow"), "r.example") == "timed out"


def test_cyclic_exception_chains_end() -> None:
    first, second = OSError("a"), OSError("b")
    first.__context__, second.__context__ = second, first
    assert connection_problem(requests.ConnectionError(first), "r.example") == "ConnectionError"
