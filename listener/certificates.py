"""Self-managed webhook certificates: the leading listener keeps a CA and the webhook's serving certificate
in a Secret of its namespace, and the caBundle of both WebhookConfigurations in step with it.

The Secret (`pulltag-webhook-tls`, type kubernetes.io/tls) holds `tls.crt`/`tls.key` (the serving
certificate, which the webhook mounts and reloads, see webhook/tls.py), `ca.crt` (every CA trusted now:
the current one first, and the previous one while a new CA is rolled in) and `ca.key` (the current CA's
key; the webhook's volume does not project it). Nothing else is state: each pass reads the Secret and the
two configurations and takes the next step of `decide`, so a leader that changes mid-rotation (or a
replica restarted meanwhile) carries on from what it reads.

A new CA is rolled in with an overlap, so that no admission call fails:
1. NEW_CA       `ca.crt` = new + old, `ca.key` = new; the serving certificate (old CA) is unchanged.
2. SYNC         both configurations' caBundle = new + old: the API server trusts either.
3. ISSUE_LEAF   a serving certificate from the new CA; the webhook replicas pick it up as their Secret
                volume is refreshed (kubelet: up to a minute or two).
4. FINISH       only when every ready endpoint of the webhook Service answers a TLS handshake with a
                certificate that the new CA alone verifies for the Service's name (probed here): `ca.crt`
                and the caBundles drop the old CA. Any doubt (a probe failing, no ready endpoint) waits.
A serving certificate is renewed `renew_within_days` before it expires (and at once when it names other
hosts or another CA signed it); the CA when it would cut the next serving certificate's lifetime short.

Forcing: annotate the Secret `pulltag.dev/rotate=serving` (a new serving certificate) or `=ca` (a new CA,
then everything above); the write that takes the step removes the annotation.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from listener.endpoint_probe import Prober, every_replica_serves, serves_current
from listener.kube import KubeClient, KubeError, Obj, own_namespace
from pulltag.certs import (
    MUTATING_WEBHOOK,
    VALIDATING_WEBHOOK,
    key_matches,
    load_key,
    make_ca,
    make_leaf,
    pem_cert,
    pem_key,
    sans_match,
    service_sans,
    signed_by,
)

log = logging.getLogger(__name__)

ROTATE_ANNOTATION = "pulltag.dev/rotate"
_CONFIG_PATHS = (
    f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{MUTATING_WEBHOOK}",
    f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{VALIDATING_WEBHOOK}",
)


@dataclass(frozen=True)
class CertificatePolicy:
    namespace: str
    service: str = "pulltag-webhook"
    secret_name: str = "pulltag-webhook-tls"
    days: int = 365
    ca_days: int = 3650
    renew_within_days: int = 30
    interval_seconds: float = 30.0  # between passes (a pass goes on while it makes progress)
    probe_timeout_seconds: float = 3.0

    @property
    def sans(self) -> list[str]:
        return service_sans(self.service, self.namespace)

    @property
    def server_name(self) -> str:
        """The name the API server asks for (SNI) and checks: `<service>.<namespace>.svc`."""
        return f"{self.service}.{self.namespace}.svc"


@dataclass(frozen=True)
class Material:
    """What the Secret holds, parsed. `ca` is the trusted CA that `ca_key` belongs to (None: no usable key);
    `leaf` is None unless `tls.crt` parses and matches `tls.key`."""

    trusted: tuple[x509.Certificate, ...]
    ca: x509.Certificate | None
    ca_key: ec.EllipticCurvePrivateKey | None
    leaf: x509.Certificate | None
    leaf_key: bytes
    rotate: str


class Step(enum.Enum):
    CREATE = "create"  # nothing usable: a CA and a serving certificate
    NEW_CA = "new-ca"  # roll a new CA in (trusted beside the old one)
    SYNC = "sync"  # the configurations' caBundle differs from ca.crt
    ISSUE_LEAF = "issue-leaf"  # a new serving certificate from the current CA
    FINISH = "finish"  # drop the old CA once every replica serves the new certificate
    NONE = "none"


def decide(
    material: Material | None, configs_in_step: bool, policy: CertificatePolicy, now: dt.datetime
) -> Step:
    """The next step from what the Secret and the configurations hold (pure)."""
    if material is None or (material.ca is None and not material.trusted):
        return Step.CREATE
    if material.ca is None or material.ca_key is None:
        return Step.NEW_CA  # CAs without our key (e.g. from `pulltag certs`): ours is rolled in beside them
    if not configs_in_step:
        return Step.SYNC
    if leaf_reason(material, policy, now) is not None:
        return Step.ISSUE_LEAF
    if len(material.trusted) > 1:
        return Step.FINISH
    ca_left = material.ca.not_valid_after_utc - now
    if material.rotate == "ca" or ca_left <= dt.timedelta(days=policy.days + policy.renew_within_days):
        return Step.NEW_CA
    return Step.NONE


def leaf_reason(material: Material, policy: CertificatePolicy, now: dt.datetime) -> str | None:
    """Why a new serving certificate is needed, or None."""
    leaf, ca = material.leaf, material.ca
    if leaf is None or ca is None:
        return "missing or unreadable"
    if not signed_by(leaf, ca):
        return "not signed by the current CA"
    if leaf.not_valid_after_utc - now <= dt.timedelta(days=policy.renew_within_days):
        return f"expires {leaf.not_valid_after_utc:%Y-%m-%d}"
    if not sans_match(leaf, policy.sans):
        return "names other hosts"
    if material.rotate == "serving":
        return "forced"
    return None


# --- the Secret -----------------------------------------------------------------------------------------


def _field(secret: Obj, key: str) -> bytes:
    value = (secret.get("data") or {}).get(key) or ""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


def parse_secret(secret: Obj | None) -> Material | None:
    if secret is None:
        return None
    try:
        trusted = tuple(x509.load_pem_x509_certificates(_field(secret, "ca.crt")))
    except ValueError:
        trusted = ()
    ca_key = load_key(_field(secret, "ca.key"))
    ca = next((c for c in trusted if ca_key is not None and key_matches(c, ca_key)), None)
    leaf_pem, leaf_key_pem = _field(secret, "tls.crt"), _field(secret, "tls.key")
    leaf: x509.Certificate | None = None
    leaf_key = load_key(leaf_key_pem)
    try:
        cert = x509.load_pem_x509_certificate(leaf_pem)
        leaf = cert if leaf_key is not None and key_matches(cert, leaf_key) else None
    except ValueError:
        leaf = None
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    rotate = str(annotations.get(ROTATE_ANNOTATION) or "")
    return Material(trusted, ca, ca_key if ca is not None else None, leaf, leaf_key_pem, rotate)


def bundle_pem(trusted: tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(pem_cert(c) for c in trusted)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def secret_body(policy: CertificatePolicy, old: Obj | None, material: Material, *, consumed: bool) -> Obj:
    """The Secret holding `material`, over `old` (its metadata and type kept); `consumed` removes the
    rotate annotation (the step it asked for is taken by this write)."""
    assert material.ca is not None and material.ca_key is not None and material.leaf is not None
    body: Obj = (
        dict(old)
        if old is not None
        else {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": policy.secret_name,
                "namespace": policy.namespace,
                "labels": {"app.kubernetes.io/name": "pulltag", "app.kubernetes.io/component": "webhook"},
            },
            "type": "kubernetes.io/tls",
        }
    )
    metadata = dict(body.get("metadata") or {})
    if consumed:
        annotations = dict(metadata.get("annotations") or {})
        annotations.pop(ROTATE_ANNOTATION, None)
        metadata["annotations"] = annotations
    body["metadata"] = metadata
    body.pop("stringData", None)
    body["data"] = {
        "tls.crt": _b64(pem_cert(material.leaf)),
        "tls.key": _b64(material.leaf_key),
        "ca.crt": _b64(bundle_pem(material.trusted)),
        "ca.key": _b64(pem_key(material.ca_key)),
    }
    return body


# --- the steps that change material (pure but for key generation) -----------------------------------


def with_new_leaf(material: Material, policy: CertificatePolicy, now: dt.datetime) -> Material:
    assert material.ca is not None and material.ca_key is not None
    leaf, key = make_leaf(material.ca, material.ca_key, policy.sans, policy.days, now)
    return Material(material.trusted, material.ca, material.ca_key, leaf, pem_key(key), material.rotate)


def with_new_ca(material: Material | None, policy: CertificatePolicy, now: dt.datetime) -> Material:
    """A new current CA, trusted before the CAs already trusted (none on CREATE: then the serving
    certificate is issued at once, nobody trusts anything yet). The serving certificate stays."""
    ca, key = make_ca(policy.ca_days, now)
    if material is None or not material.trusted:
        fresh = Material((ca,), ca, key, None, b"", "")
        return with_new_leaf(fresh, policy, now)
    previous = material.trusted[:1] if material.ca is not None else material.trusted
    rolled = Material((ca, *previous), ca, key, material.leaf, material.leaf_key, material.rotate)
    # No serving certificate to keep (nothing can be served from this Secret now): one from the new CA.
    return with_new_leaf(rolled, policy, now) if material.leaf is None else rolled


# --- the manager ------------------------------------------------------------------------------------


class CertificateManager:
    """One pass (`reconcile`) or a loop of them on a thread (`start`/`stop`), run by the leader only."""

    def __init__(
        self,
        kube: KubeClient,
        policy: CertificatePolicy,
        *,
        probe: Prober = serves_current,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.kube = kube
        self.policy = policy
        self.probe = probe
        self.clock = clock
        ns, name = quote(policy.namespace, safe=""), quote(policy.secret_name, safe="")
        self._secrets = f"/api/v1/namespaces/{ns}/secrets"
        self._secret_path = f"{self._secrets}/{name}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reconcile(self, max_steps: int = 6) -> Step:
        """Take steps while they make progress; the step it stopped at (NONE: all in step)."""
        step = Step.NONE
        for _ in range(max_steps):
            step = self._step()
            if step in (Step.NONE, Step.FINISH):
                return step
        return step

    def _step(self) -> Step:
        secret = self.kube.get(self._secret_path)
        material = parse_secret(secret)
        bundle = bundle_pem(material.trusted) if material is not None else b""
        in_step = all(self._config_in_step(path, bundle) for path in _CONFIG_PATHS)
        now = self.clock()
        step = decide(material, in_step, self.policy, now)
        if step is Step.CREATE or step is Step.NEW_CA:
            new = with_new_ca(material, self.policy, now)
            log.info("webhook certificates: %s (a new CA)", step.value)
            self._write(secret, new, consumed=material is not None and material.rotate == "ca")
            self._sync(bundle_pem(new.trusted))
        elif step is Step.SYNC:
            assert material is not None
            self._sync(bundle)
        elif step is Step.ISSUE_LEAF:
            assert material is not None
            log.info(
                "webhook certificates: new serving certificate (%s)", leaf_reason(material, self.policy, now)
            )
            self._write(
                secret, with_new_leaf(material, self.policy, now), consumed=material.rotate == "serving"
            )
        elif step is Step.FINISH:
            assert material is not None and material.ca is not None
            if not every_replica_serves(self.kube, self.policy, material.ca, self.probe):
                return step
            log.info("webhook certificates: every replica serves the new CA's certificate; old CA dropped")
            done = Material(
                (material.ca,),
                material.ca,
                material.ca_key,
                material.leaf,
                material.leaf_key,
                material.rotate,
            )
            self._write(secret, done, consumed=False)
            self._sync(bundle_pem(done.trusted))
            return Step.SYNC  # go on: a forced CA rotation may be waiting behind the overlap
        return step

    def _write(self, old: Obj | None, material: Material, *, consumed: bool) -> None:
        body = secret_body(self.policy, old, material, consumed=consumed)
        if old is None:
            self.kube.create(self._secrets, body)
        else:
            self.kube.replace(self._secret_path, body)  # carries the resourceVersion read: 409 if raced

    def _config_in_step(self, path: str, bundle: bytes) -> bool:
        config = self.kube.get(path)
        if config is None:
            return True  # not installed (yet): nothing calls the webhook through it
        return all(
            (wh.get("clientConfig") or {}).get("caBundle") == _b64(bundle)
            for wh in config.get("webhooks") or []
        )

    def _sync(self, bundle: bytes) -> None:
        for path in _CONFIG_PATHS:
            config = self.kube.get(path)
            if config is None:
                continue
            webhooks = config.get("webhooks") or []
            if all((wh.get("clientConfig") or {}).get("caBundle") == _b64(bundle) for wh in webhooks):
                continue
            for wh in webhooks:
                wh.setdefault("clientConfig", {})["caBundle"] = _b64(bundle)
            self.kube.replace(path, config)
            log.info("caBundle of %s updated", path.rsplit("/", 1)[1])

    # --- the loop ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="certificates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.policy.probe_timeout_seconds * 2 + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except KubeError as exc:
                log.warning("webhook certificates: %s (retried in %.0fs)", exc, self.policy.interval_seconds)
            self._stop.wait(self.policy.interval_seconds)


def with_certificates(
    args: argparse.Namespace, kube: KubeClient, start: Callable[[], None], stop: Callable[[], None]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """`start`/`stop` of a leadership term, running the certificate manager beside the listener when
    `--manage-webhook-certificates` is given (the chart's and manifests/' default)."""
    if not getattr(args, "manage_webhook_certificates", False):
        return start, stop
    namespace = getattr(args, "namespace", None) or own_namespace()
    manager = CertificateManager(kube, CertificatePolicy(namespace=namespace))

    def both_start() -> None:
        manager.start()
        start()

    def both_stop() -> None:
        manager.stop()
        stop()

    return both_start, both_stop
