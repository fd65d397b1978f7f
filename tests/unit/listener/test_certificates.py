"""The certificate manager's decisions (listener/certificates.decide) over plain Secret contents: each state
of a rotation leads to the one safe next step, and a Secret written by one step parses back to the state
the next step expects."""

from __future__ import annotations

import datetime as dt

import pytest

from listener.certificates import (
    CertificatePolicy,
    Material,
    Step,
    decide,
    parse_secret,
    secret_body,
    with_new_ca,
    with_new_leaf,
)
from pulltag.certs import make_ca, make_leaf, pem_key

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
POLICY = CertificatePolicy(namespace="pulltag-system")


def _material(
    *,
    ca_days: int = 3650,
    leaf_days: int = 365,
    overlap: bool = False,
    rotate: str = "",
    sans: list[str] | None = None,
) -> Material:
    ca, key = make_ca(ca_days, NOW)
    leaf, leaf_key = make_leaf(ca, key, sans or POLICY.sans, leaf_days, NOW)
    trusted = (ca, make_ca(3650, NOW)[0]) if overlap else (ca,)
    return Material(trusted, ca, key, leaf, pem_key(leaf_key), rotate)


def _foreign_leaf() -> Material:
    """The leaf of another CA than the current one (a new CA was just rolled in)."""
    material = _material(overlap=True)
    old_ca, old_key = make_ca(3650, NOW)
    leaf, leaf_key = make_leaf(old_ca, old_key, POLICY.sans, 365, NOW)
    return Material((material.ca, old_ca), material.ca, material.ca_key, leaf, pem_key(leaf_key), "")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("material", "in_step", "expected"),
    [
        (lambda: None, True, Step.CREATE),
        (lambda: Material((), None, None, None, b"", ""), True, Step.CREATE),
        # CAs without our key (e.g. a Secret from certs/generate.sh): ours is rolled in beside them.
        (lambda: Material(_material().trusted, None, None, _material().leaf, b"", ""), True, Step.NEW_CA),
        (lambda: _material(), False, Step.SYNC),
        # Never a new leaf from a CA the API server may not trust yet.
        (lambda: _foreign_leaf(), False, Step.SYNC),
        (lambda: _foreign_leaf(), True, Step.ISSUE_LEAF),
        (lambda: _material(leaf_days=30), True, Step.ISSUE_LEAF),
        (lambda: _material(leaf_days=31), True, Step.NONE),
        (lambda: _material(sans=["elsewhere"]), True, Step.ISSUE_LEAF),
        (lambda: _material(rotate="serving"), True, Step.ISSUE_LEAF),
        (lambda: _material(overlap=True), True, Step.FINISH),
        # A forced CA rotation waits for the overlap of the previous one to end.
        (lambda: _material(overlap=True, rotate="ca"), True, Step.FINISH),
        (lambda: _material(rotate="ca"), True, Step.NEW_CA),
        (lambda: _material(ca_days=395), True, Step.NEW_CA),
        (lambda: _material(ca_days=396), True, Step.NONE),
        (lambda: _material(rotate="something"), True, Step.NONE),
    ],
)
def test_decide(material, in_step: bool, expected: Step) -> None:  # type: ignore[no-untyped-def]
    assert decide(material(), in_step, POLICY, NOW) is expected


def _roundtrip(material: Material, *, consumed: bool = False, old: dict | None = None) -> Material:  # type: ignore[type-arg]
    parsed = parse_secret(secret_body(POLICY, old, material, consumed=consumed))
    assert parsed is not None
    return parsed


def test_a_ca_rotation_goes_through_every_step_in_order() -> None:
    current = _roundtrip(
        _material(rotate="ca"), old={"metadata": {"annotations": {"pulltag.dev/rotate": "ca"}}}
    )
    assert current.rotate == "ca"
    assert decide(current, True, POLICY, NOW) is Step.NEW_CA
    rolled = _roundtrip(with_new_ca(current, POLICY, NOW), consumed=True)
    assert rolled.rotate == "" and rolled.trusted[1] == current.ca and rolled.leaf == current.leaf
    assert decide(rolled, False, POLICY, NOW) is Step.SYNC
    assert decide(rolled, True, POLICY, NOW) is Step.ISSUE_LEAF
    issued = _roundtrip(with_new_leaf(rolled, POLICY, NOW))
    assert decide(issued, True, POLICY, NOW) is Step.FINISH


def test_create_makes_a_usable_pair() -> None:
    created = _roundtrip(with_new_ca(None, POLICY, NOW))
    assert len(created.trusted) == 1 and created.ca is not None and created.leaf is not None
    assert decide(created, True, POLICY, NOW) is Step.NONE


def test_an_unparsable_secret_is_created_anew_and_the_ca_key_stays_out_of_the_bundle() -> None:
    assert parse_secret({"data": {"ca.crt": "not base64!", "tls.key": "AAAA"}}) == Material(
        (), None, None, None, b"\x00\x00\x00", ""
    )
    body = secret_body(POLICY, None, with_new_ca(None, POLICY, NOW), consumed=False)
    assert body["type"] == "kubernetes.io/tls"
    assert set(body["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
