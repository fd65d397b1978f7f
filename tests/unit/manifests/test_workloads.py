"""Pods and containers: security context, probes, resources, volumes, arguments, wiring to Services."""

from __future__ import annotations

import pytest

from tests.unit.manifests.render import (
    NAMESPACE,
    Obj,
    Rendered,
    all_containers,
    env_of,
    label_selector_matches,
    mounts_of,
    pod_labels,
    pod_spec,
    selector_matches,
    volumes_of,
    workloads,
)

UID = 10001
# The namespace and the password are filled in by the kubelet ($(VAR) from the env entries above it).
REDIS_URL = "redis://:$(STORE_PASSWORD)@pulltag-redis.$(POD_NAMESPACE).svc:6379/0"
CONFIG_PATH = "/etc/pulltag/config.yaml"
SQLITE_URL = "sqlite:///var/lib/pulltag/pulltag.db"
WEBHOOK_ARGS = [
    "webhook",
    "--config",
    "/etc/pulltag/config.yaml",
    "--bind",
    "0.0.0.0:8443",
    "--certfile",
    "/etc/pulltag/tls/tls.crt",
    "--keyfile",
    "/etc/pulltag/tls/tls.key",
    "--workers",
    "2",
    "--threads",
    "4",
]
LISTENER_ARGS = ["listener", "--config", "/etc/pulltag/config.yaml", "--metrics-bind", "0.0.0.0:9090"]
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_every_variant_runs_something(rendered: Rendered) -> None:
    assert workloads(rendered)
    assert {o["kind"] for o in workloads(rendered)} == {"Deployment"}


def test_pod_security_context(rendered: Rendered) -> None:
    for obj in workloads(rendered):
        spec = pod_spec(obj)
        sc = spec.get("securityContext", {})
        name = obj["metadata"]["name"]
        assert sc.get("runAsNonRoot") is True, name
        assert sc.get("runAsUser") == UID, name
        assert sc.get("runAsGroup") == UID, name
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name


def test_container_security_context(rendered: Rendered) -> None:
    for obj in workloads(rendered):
        for c in all_containers(pod_spec(obj)):
            where = f"{obj['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser") == UID, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities") == {"drop": ["ALL"]}, where
            # The pod-level profile applies; a container must not weaken it.
            assert sc.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}, where


def test_probes_on_every_long_running_container(rendered: Rendered) -> None:
    for obj in workloads(rendered):
        for c in pod_spec(obj)["containers"]:
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert "livenessProbe" in c, where
            assert "readinessProbe" in c, where
            port_names = {p["name"] for p in c.get("ports", [])}
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(probe_name)
                if probe is None:
                    continue
                action = probe.get("httpGet") or probe.get("tcpSocket")
                if action is not None:
                    assert action["port"] in port_names, f"{where} {probe_name}: port {action['port']}"


def test_pulltag_probes_use_health_endpoints(rendered: Rendered) -> None:
    expectations = {"webhook": ("HTTPS", 8443), "listener": ("HTTP", 9090)}
    for obj in workloads(rendered):
        for c in pod_spec(obj)["containers"]:
            if c["name"] not in expectations:
                continue
            scheme, port = expectations[c["name"]]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe_name, path in (
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            ):
                get = c[probe_name]["httpGet"]
                assert get["path"] == path
                assert get["scheme"] == scheme
                assert ports[get["port"]] == port


def test_resources_set(rendered: Rendered) -> None:
    for obj in workloads(rendered):
        for c in all_containers(pod_spec(obj)):
            where = f"{obj['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                assert set(resources.get(section, {})) >= {"cpu", "memory"}, f"{where} {section}"


def test_writable_tmp_and_volume_wiring(rendered: Rendered) -> None:
    secrets = {o["metadata"]["name"] for o in rendered.kinds("Secret")}
    secrets |= {o["spec"]["secretName"] for o in rendered.kinds("Certificate")}
    if rendered.name == "app" or rendered.self_managed:
        # base/app leaves the certificate to base or cert-manager; self-managed: the listener makes it.
        secrets.add("pulltag-webhook-tls")
    config_maps = {o["metadata"]["name"] for o in rendered.kinds("ConfigMap")} | {"kube-root-ca.crt"}
    claims = {o["metadata"]["name"] for o in rendered.kinds("PersistentVolumeClaim")}
    for obj in workloads(rendered):
        spec = pod_spec(obj)
        volumes = volumes_of(spec)
        for c in all_containers(spec):
            where = f"{obj['metadata']['name']}/{c['name']}"
            mounts = mounts_of(c)
            assert "/tmp" in mounts, where
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], where
            for m in mounts.values():
                assert m["name"] in volumes, f"{where}: mount of unknown volume {m['name']}"
        for v in volumes.values():
            if "secret" in v and not v["secret"].get("optional"):
                assert v["secret"]["secretName"] in secrets, v
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps, v
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, v
            for source in v.get("projected", {}).get("sources", []):
                if "configMap" in source:
                    assert source["configMap"]["name"] in config_maps, v
            if "emptyDir" in v:
                assert "sizeLimit" in v["emptyDir"], v


def _pulltag_containers(rendered: Rendered, name: str) -> list[tuple[Obj, Obj]]:
    return [
        (obj, c)
        for obj in workloads(rendered)
        for c in pod_spec(obj)["containers"]
        if c["name"] == name and c["image"].startswith("ghcr.io/pulltag/pulltag")
    ]


def test_webhook_container(rendered: Rendered) -> None:
    found = _pulltag_containers(rendered, "webhook")
    assert len(found) == 1
    obj, c = found[0]
    assert c["args"] == WEBHOOK_ARGS
    assert "command" not in c  # the image's ENTRYPOINT is `pulltag`
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("https", 8443)]
    mounts = mounts_of(c)
    volumes = volumes_of(pod_spec(obj))
    tls = volumes[mounts["/etc/pulltag/tls"]["name"]]["secret"]
    assert tls["secretName"] == "pulltag-webhook-tls"
    # Never the CA's key (self-managed certificates keep it in the same Secret).
    assert [i["key"] for i in tls["items"]] == ["tls.crt", "tls.key", "ca.crt"]
    assert volumes[mounts["/etc/pulltag/config.yaml"]["name"]]["configMap"]["name"] == "pulltag-config"
    assert mounts["/etc/pulltag/config.yaml"]["subPath"] == "config.yaml"
    # Neither registry credentials nor an API token reach the webhook.
    assert "/etc/pulltag/registry" not in mounts
    assert SA_TOKEN_PATH not in mounts
    assert pod_spec(obj)["automountServiceAccountToken"] is False


def test_listener_container(rendered: Rendered) -> None:
    found = _pulltag_containers(rendered, "listener")
    assert len(found) == 1
    obj, c = found[0]
    single = rendered.single_pod
    expected = [*LISTENER_ARGS, "--no-leader-election"] if single else list(LISTENER_ARGS)
    if rendered.self_managed:
        expected.append("--manage-webhook-certificates")
    assert c["args"] == expected
    assert "command" not in c
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("metrics", 9090)]
    env = env_of(c)
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    mounts = mounts_of(c)
    volumes = volumes_of(pod_spec(obj))
    registry = volumes[mounts["/etc/pulltag/registry"]["name"]]["secret"]
    assert registry == {
        "secretName": "pulltag-registry-credentials",
        "optional": True,
        "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}],
    }
    assert pod_spec(obj)["serviceAccountName"] == "pulltag-listener"
    spec = pod_spec(obj)
    if single:
        # The token is projected into the listener only.
        assert spec["automountServiceAccountToken"] is False
        token = volumes[mounts[SA_TOKEN_PATH]["name"]]["projected"]["sources"]
        assert {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}} in token
    else:
        assert spec.get("automountServiceAccountToken", True) is True
        assert obj["spec"]["replicas"] == 2


def test_store_urls(rendered: Rendered) -> None:
    expected = SQLITE_URL if rendered.single_pod else REDIS_URL
    for name in ("webhook", "listener"):
        ((_, c),) = _pulltag_containers(rendered, name)
        env = env_of(c)
        assert env["PULLTAG_STORE_URL"] == {"name": "PULLTAG_STORE_URL", "value": expected}
        # kubectl exec ... -- pulltag <command> reads the same config as the process.
        assert env["PULLTAG_CONFIG"] == {"name": "PULLTAG_CONFIG", "value": CONFIG_PATH}
        names = [e["name"] for e in c["env"]]
        if not rendered.single_pod:
            # $(VAR) only expands variables defined before it.
            assert names.index("POD_NAMESPACE") < names.index("PULLTAG_STORE_URL")
            assert names.index("STORE_PASSWORD") < names.index("PULLTAG_STORE_URL")
            password = env["STORE_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert password == {"name": "pulltag-store-password", "key": "password"}


@pytest.mark.parametrize("variant", ["default", "base", "app", "cert-manager", "chart", "chart-cert-manager"])
def test_replicated_webhook_and_redis(rendered_all: dict[str, Rendered], variant: str) -> None:
    rendered = rendered_all[variant]
    webhook = rendered.get("Deployment", "pulltag-webhook")
    assert webhook["spec"]["replicas"] == 2
    assert webhook["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spec = pod_spec(webhook)
    assert spec["serviceAccountName"] == "pulltag-webhook"
    for deployment in (webhook, rendered.get("Deployment", "pulltag-listener")):
        (term,) = pod_spec(deployment)["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert label_selector_matches(term["podAffinityTerm"]["labelSelector"], pod_labels(deployment))
        assert (
            "requiredDuringSchedulingIgnoredDuringExecution"
            not in pod_spec(deployment)["affinity"]["podAntiAffinity"]
        )
    for name in ("pulltag-webhook", "pulltag-listener"):
        pdb = rendered.get("PodDisruptionBudget", name)
        assert pdb["spec"]["minAvailable"] == 1
        assert label_selector_matches(pdb["spec"]["selector"], pod_labels(rendered.get("Deployment", name)))

    redis = rendered.get("Deployment", "pulltag-redis")
    (c,) = pod_spec(redis)["containers"]
    args = c["args"]
    # Durable: append-only file on the kept PVC, password required (from the Secret, never inline).
    assert args[0] == "valkey-server"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--dir") + 1] == "/data"
    assert args[args.index("--requirepass") + 1] == "$(STORE_PASSWORD)"
    password = env_of(c)["STORE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "pulltag-store-password", "key": "password"}
    data = volumes_of(pod_spec(redis))[mounts_of(c)["/data"]["name"]]
    assert data["persistentVolumeClaim"]["claimName"] == "pulltag-redis-data"
    assert redis["spec"]["strategy"] == {"type": "Recreate"}
    assert pod_spec(redis)["automountServiceAccountToken"] is False
    service = rendered.get("Service", "pulltag-redis")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(6379, "redis")]
    assert selector_matches(service["spec"]["selector"], pod_labels(redis))


def test_single_pod(rendered_all: dict[str, Rendered]) -> None:
    rendered = rendered_all["single-pod"]
    deployment = rendered.get("Deployment", "pulltag")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(deployment)
    assert [c["name"] for c in spec["containers"]] == ["webhook", "listener"]
    claim = volumes_of(spec)["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == "pulltag-data"
    for c in spec["containers"]:
        assert mounts_of(c)["/var/lib/pulltag"]["name"] == "data"
    assert spec["securityContext"]["fsGroup"] == UID  # the volume is writable by user 10001
    assert not [o for o in rendered.objects if "redis" in o["metadata"]["name"]]
    pvc = rendered.get("PersistentVolumeClaim", "pulltag-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_services_select_the_pods_serving_them(rendered: Rendered) -> None:
    pods = workloads(rendered)
    for service in rendered.kinds("Service"):
        selected = [o for o in pods if selector_matches(service["spec"]["selector"], pod_labels(o))]
        assert len(selected) == 1, service["metadata"]["name"]
        port_names = {
            p["name"]: p["containerPort"]
            for c in pod_spec(selected[0])["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)
    webhook = rendered.get("Service", "pulltag-webhook")
    assert [(p["name"], p["port"], p["targetPort"]) for p in webhook["spec"]["ports"]] == [
        ("https", 443, "https")
    ]
    selected = [o for o in pods if selector_matches(webhook["spec"]["selector"], pod_labels(o))]
    assert [c["name"] for c in pod_spec(selected[0])["containers"] if c["name"] == "webhook"] == ["webhook"]


def _ingress_ports(policy: Obj) -> set[int]:
    return {p["port"] for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])}


def test_network_policies(rendered: Rendered) -> None:
    policies = rendered.kinds("NetworkPolicy")
    deny = rendered.get("NetworkPolicy", "pulltag-default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                assert port["protocol"] == "TCP"
    # What each pod may be reached on: the union of the policies selecting it.
    allowed: dict[str, set[int]] = {}
    for obj in workloads(rendered):
        labels = pod_labels(obj)
        ports: set[int] = set()
        for policy in policies:
            if label_selector_matches(policy["spec"]["podSelector"], labels):
                ports |= _ingress_ports(policy)
        allowed[obj["metadata"]["name"]] = ports
    if rendered.single_pod:
        assert allowed == {"pulltag": {8443, 9090}}
        return
    assert allowed == {"pulltag-webhook": {8443}, "pulltag-listener": {9090}, "pulltag-redis": {6379}}
    # 8443 and 9090 from anywhere (the API server's address is unknown); Redis from our pods only.
    for name in ("pulltag-webhook", "pulltag-listener"):
        (rule,) = rendered.get("NetworkPolicy", name)["spec"]["ingress"]
        assert "from" not in rule
    (rule,) = rendered.get("NetworkPolicy", "pulltag-redis")["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # same namespace only
    for name, may in (("pulltag-webhook", True), ("pulltag-listener", True), ("pulltag-redis", False)):
        labels = pod_labels(rendered.get("Deployment", name))
        assert label_selector_matches(peer["podSelector"], labels) is may, name
    assert not label_selector_matches(peer["podSelector"], {"app.kubernetes.io/name": "other"})


def test_namespace_labels(rendered: Rendered) -> None:
    labels = rendered.get("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pulltag.dev/ignore"] == "true"
