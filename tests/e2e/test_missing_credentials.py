"""GitOps-safe credentials in the test world: the listener runs while the registry credentials Secret is
missing (the manifests mount it `optional: true`, so the mounted folder is empty), each pull it cannot
tag is failed with a reason naming the missing Secret, and once the Secret appears the next pull is
tagged without a restart."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness.world import World, _http_ok

pytestmark = pytest.mark.timeout(300)

SECRET = "pulltag-registry-credentials"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(
        tmp_path_factory.mktemp("world-no-secret"),
        store_kind="redis",
        with_harbor=False,
        start_listener=False,
    )
    w.start()
    yield w
    w.stop()


def test_listener_runs_without_the_secret_and_names_it(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(world.config_path.read_text())
    (registry,) = config["registries"]
    real_credentials = Path(registry["credentials"])
    mounted = tmp_path / "registry" / ".dockerconfigjson"  # the optional Secret's mount: empty for now
    mounted.parent.mkdir()
    registry["credentials"] = str(mounted)
    world.config_path.write_text(yaml.safe_dump(config))
    # what the Deployments set (tests/unit/chart/test_config_env.py checks they do)
    monkeypatch.setenv("PULLTAG_CREDENTIALS_SECRET", SECRET)
    listener = world.start_listener_process()
    port = world.metrics_port

    first = world.push("shop/nosecret", "1")
    pod = world.create_pod("shop", {"app": first}, generate_name="nosecret-")
    world.wait_pods_running([pod])

    def failed() -> list[dict[str, object]]:
        return [e for e in world.ledger() if e["pod"] == pod.name and e["outcome"] == "failed"]

    world.wait_for(lambda: bool(failed()), 60, "the tag attempt to fail")
    reason = str(failed()[0]["reason"])
    assert f"the Secret {SECRET} is missing" in reason
    assert listener.running and _http_ok(f"http://127.0.0.1:{port}/readyz")
    assert not [t for t in world.registry_tags("shop/nosecret") if t.startswith("deployed_")]

    # The Secret is created (External Secrets, kubectl create secret): the file appears in the mount.
    shutil.copy(real_credentials, mounted)
    second = world.push("shop/withsecret", "1")
    digest = world.registry.tag_digest("shop/withsecret", "1")
    pod2 = world.create_pod("shop", {"app": second}, generate_name="withsecret-")
    world.wait_pods_running([pod2])
    world.wait_for(
        lambda: (
            digest
            in {d for t, d in world.registry_tags("shop/withsecret").items() if t.startswith("deployed_")}
        ),
        60,
        "the pull after the Secret appeared to be tagged",
    )
    assert listener.running
