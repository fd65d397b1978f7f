"""Self-managed webhook certificates in the test world (listener/certificates.py): a fresh install records
pods with no manual step; forced rotations of the serving certificate and of the CA, while pods are being
created, lose no admission call; a replica that lags behind holds the old CA in the caBundle, and once
restarted the rotation converges (also across a restart of the manager itself)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from pulltag.certs import pem_cert, signed_by
from tests.harness.procs import wait_for
from tests.integration.certs.world import CertWorld, PodStream

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[CertWorld]:
    w = CertWorld(tmp_path)
    try:
        w.install()
        yield w
    finally:
        w.stop()


def test_the_listener_process_makes_them_on_a_fresh_install(tmp_path: Path) -> None:
    """The default install's listener command (leader election on): no certificate anywhere before, pods
    recorded after, nothing run outside the cluster."""
    world = CertWorld(tmp_path, process=True)
    try:
        world.install()
        (ca,) = world.trusted()
        wait_for(lambda: _only(world, ca), 30, "the caBundles of both configurations set")
        stream = PodStream(world.api)
        pods = [stream.create_one() for _ in range(4)]
        assert world.unrecorded(pods) == []
        assert world.listener_denials() == []
        assert world.api.get("leases", "pulltag-listener", "pulltag-system")["spec"]["holderIdentity"]
    finally:
        world.stop()


def _only(world: CertWorld, ca: x509.Certificate) -> bool:
    """The Secret and both configurations trust `ca` alone, and every replica serves a certificate of it."""
    trusted = world.trusted()
    return (
        len(trusted) == 1
        and trusted[0] == ca
        and all(bundle == pem_cert(ca) for bundle in world.ca_bundles())
        and all(signed_by(r.serves(), ca) for r in world.replicas)
    )


def test_fresh_install_records_pods_without_a_manual_step(world: CertWorld) -> None:
    (ca,) = world.trusted()
    wait_for(lambda: _only(world, ca), 30, "the caBundles of both configurations set")
    stream = PodStream(world.api)
    pods = [stream.create_one() for _ in range(6)]  # three calls per replica (round robin)
    assert world.unrecorded(pods) == []
    assert world.listener_denials() == []


def test_forced_rotations_under_load_lose_no_admission_call(world: CertWorld) -> None:
    (first_ca,) = world.trusted()
    wait_for(lambda: _only(world, first_ca), 30, "the first install in step")
    first_leaf = world.replicas[0].serves()
    stream = PodStream(world.api).start()
    try:
        wait_for(lambda: stream.count() >= 10, 30, "pods created before the rotations")
        started = time.monotonic()
        world.annotate("serving")
        wait_for(
            lambda: all(r.serves().serial_number != first_leaf.serial_number for r in world.replicas),
            30,
            "every replica serving the new serving certificate",
        )
        serving_took = time.monotonic() - started
        assert world.trusted() == [first_ca]  # the same CA: nothing else changed
        during = stream.count()
        started = time.monotonic()
        world.annotate("ca")
        wait_for(lambda: world.trusted()[0] != first_ca, 30, "a new CA rolled in")
        new_ca = world.trusted()[0]
        wait_for(lambda: _only(world, new_ca), 60, "the old CA dropped, every replica on the new")
        ca_took = time.monotonic() - started
        during_ca = stream.count() - during
        assert "pulltag.dev/rotate" not in (world.secret()["metadata"].get("annotations") or {})
        after = stream.count()
        wait_for(lambda: stream.count() >= after + 10, 30, "pods created after the rotations")
    finally:
        pods = stream.stop()
    # Figures for the record (not asserted): the Secret volume here is refreshed every 0.5 s and the
    # webhook looks at its files every 0.1 s; kubelet takes up to a minute or two.
    print(
        f"pods created: {len(pods)} ({during} before the CA rotation, {during_ca} during it); serving "
        f"rotation seen by every replica after {serving_took:.2f}s, CA rotation finished after {ca_took:.2f}s"
    )
    assert len(pods) > during > 10 and during_ca > 0
    assert world.unrecorded(pods) == []
    assert world.listener_denials() == []


def _endpoint_lists(world: CertWorld) -> int:
    return sum(1 for r in world.api.request_log if "/endpointslices" in r[1] and r[3] == 200)


def test_a_lagging_replica_keeps_the_old_ca_and_a_restart_converges(world: CertWorld) -> None:
    (old_ca,) = world.trusted()
    wait_for(lambda: _only(world, old_ca), 30, "the first install in step")
    fresh, lagging = world.replicas
    lagging.volume.hold()  # its kubelet does not refresh the Secret volume
    stream = PodStream(world.api).start()
    try:
        world.annotate("ca")
        wait_for(lambda: world.trusted()[0] != old_ca, 30, "a new CA rolled in")
        new_ca = world.trusted()[0]
        wait_for(lambda: signed_by(fresh.serves(), new_ca), 30, "the fresh replica serving the new CA's cert")
        # The manager probes the replicas again and again: the lagging one still serves the old CA's
        # certificate, so the old CA must stay in the caBundles (dropping it would fail its calls).
        probes = _endpoint_lists(world)
        wait_for(lambda: _endpoint_lists(world) >= probes + 5, 30, "five more passes of the manager")
        assert signed_by(lagging.serves(), old_ca)
        assert [c for c in world.trusted()] == [new_ca, old_ca]
        assert all(bundle == pem_cert(new_ca) + pem_cert(old_ca) for bundle in world.ca_bundles())

        # The leader changes mid-rotation: a new manager carries on from what the Secret holds.
        world.manager.stop()
        world.manager = world.new_manager()
        world.manager.start()
        # The lagging replica is restarted (not ready while down): it mounts the current Secret.
        world.set_ready(lagging, False)
        lagging.webhook.stop()
        lagging.volume.release()
        lagging.volume.sync()
        lagging.webhook.start(timeout=30)
        world.set_ready(lagging, True)
        wait_for(lambda: _only(world, new_ca), 60, "the rotation finished, every replica on the new CA")
        after = stream.count()
        wait_for(lambda: stream.count() >= after + 10, 30, "pods created after the rotation")
    finally:
        pods = stream.stop()
    print(f"pods created: {len(pods)}")
    assert world.unrecorded(pods) == []
    assert world.listener_denials() == []
