"""`make demo` (`python -m tests.demo`): the whole chain on this machine, told as a short story.

It runs from a checkout of the repository and stands on the test world in `tests/harness/` (it is not
part of the installed product): a real docker-registry with token auth and a few small images, the
webhook under gunicorn over TLS with certificates from `pulltag certs`, the listener as its own process,
the fake Kubernetes API server with its simulated kubelet, and the embedded SQLite store.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tests.harness import world as world_module
from tests.harness.procs import die_with_my_parent


def _say(text: str = "") -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.demo", description="run the whole chain on this machine and tell the story"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave everything running and say how to look around"
    )
    args = parser.parse_args(argv)
    # Killed, or the command that started us killed (make cannot pass a SIGKILL on): stop the world on
    # the way out. Its servers die with this process in any case (tests/harness/procs.py).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    die_with_my_parent(signal.SIGTERM)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pulltag-demo-"))
    _say("pulltag demo: starting a fake cluster, a real registry, the webhook and the listener ...")
    world = world_module.World(workdir, store_kind="sqlite", with_harbor=False)
    world.start()
    try:
        _tell(world)
        _say(f"\n(everything ran on this machine in {time.monotonic() - started:.1f} s)")
        if args.keep:
            _keep(world)
    finally:
        world.stop()
    return 0


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _tell(world: Any) -> None:
    registry = world.registry.host
    web = world.push("shop/web", "1.4.2")
    sidecar = world.push("shop/sidecar", "0.9", kind="index")
    _say(f"registry {registry}: pushed {web} and {sidecar} (multi-arch)")
    _say(f"listener: watching Pulled events; store: {world.store_url}")
    _say("\nkubectl create deployment web --replicas=3  (2 containers: web, sidecar)")
    pods = world.create_deployment("shop", "web", 3, {"web": web, "sidecar": sidecar})
    world.wait_pods_running(pods, timeout=30)
    expected = {_digest(world, "shop/web", "1.4.2"), _digest(world, "shop/sidecar", "0.9")}

    def tagged() -> bool:
        return {e["digest"] for e in world.ledger() if e["outcome"] == "created"} >= expected

    world.wait_for(tagged, 40, "both images to be tagged")
    records = {r.uid: r for r in world.admissions()}
    pulled = world.events("Pulled", "shop")
    ledger = world.ledger()
    for pod in pods:
        record = records.get(pod.uid)
        node = world.kubelet.node_of(pod.namespace, pod.name)
        _say(f"\npod {pod.namespace}/{pod.name} on {node}")
        _say(f"  admitted  uid {pod.uid[:8]}…, recorded by the webhook: {'yes' if record else 'no'}")
        for container in ("web", "sidecar"):
            event = next(
                (e for e in pulled if e["involvedObject"]["name"] == pod.name
                 and e["involvedObject"].get("fieldPath", "").endswith("{" + container + "}")),
                None,
            )  # fmt: skip
            message = event["message"] if event else "(no Pulled event)"
            _say(f"  pulled    {container}: {message}")
            entry = next((e for e in ledger if e["pod"] == pod.name and e["container"] == container), None)
            if entry is None:
                _say(f"  tagged    {container}: (same digest already tagged for its scope: nothing to do)")
            else:
                _say(f"  tagged    {container}: {entry['outcome']} {entry['tag']} on {entry['digest'][:19]}…")
    _say("\nregistry tags now:")
    for repository in ("shop/web", "shop/sidecar"):
        for tag, digest in sorted(world.registry_tags(repository).items()):
            _say(f"  {registry}/{repository}:{tag:<32} {digest[:19]}…")
    events = world.events("ImageTagged", "shop")
    _say(f"\nImageTagged events posted on the pods: {len(events)}")
    for event in events:
        _say(f"  {event['involvedObject']['name']}: {event['message']}")


def _digest(world: Any, repository: str, tag: str) -> str:
    digest: str = world.registry.tag_digest(repository, tag)
    return digest


def _keep(world: Any) -> None:
    _say("\nstill running (--keep). Look around:")
    _say(f"  PULLTAG_STORE_URL={world.store_url} .venv/bin/pulltag history")
    _say(f"  PULLTAG_STORE_URL={world.store_url} .venv/bin/pulltag admissions")
    _say(f"  listener metrics: http://127.0.0.1:{world.metrics_port}/metrics")
    _say(f"  webhook metrics:  https://127.0.0.1:{world.webhook.port}/metrics (CA {world.webhook.ca_file})")
    kubeconfig = world.api.write_kubeconfig(world.workdir / "admin.kubeconfig")
    _say(f"  kubectl --kubeconfig {kubeconfig} get pods -A")
    _say("press Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("stopping")


if __name__ == "__main__":
    raise SystemExit(main())
