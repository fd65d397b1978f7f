"""What every chaos scenario shares: sizes (bounded, or soak with PULLTAG_SOAK=1), the world they run in,
a rollout that creates pods while faults happen, the final exactness check, and the captured logs.

The final check is registry truth: every confirmed pull of an admitted pod (a container whose status
carries an imageID) has exactly one `deployed_` tag for its key (scope `image`: registry, repository,
digest) on that digest, and no `deployed_` tag sits on a digest no admitted pod pulled.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulltag.images import parse_reference
from tests.harness.harbor import HARBOR_PASSWORDS
from tests.harness.registry import PASSWORDS
from tests.harness.world import Pod, World

SOAK = os.environ.get("PULLTAG_SOAK", "") not in ("", "0")
REDIS_PASSWORD = "chaos-redis-pw-7f3a91"
PREFIX = "deployed"
# The rendered name, or its digest-suffixed variant when two digests of a repository met in one second.
TAG_RE = re.compile(rf"{PREFIX}_(?P<ns>[a-z0-9-]+)_\d{{8}}-\d{{6}}(?:_[0-9a-f]{{12}})?")

# Every process log of every chaos world of this session (the last test greps them for secrets).
CAPTURED_LOGS: list[Path] = []

# Short timings so faults are noticed in seconds: bookmarks come every second from the fake API server.
CHAOS_LISTENER_CONFIG: dict[str, Any] = {
    "imageid_wait_seconds": 30,
    "watch_read_timeout_seconds": 3,
    "watch_backoff_max_seconds": 2,
    "lease_duration_seconds": 3,
    "claim_ttl_seconds": 8,
    "failed_retry_seconds": 5,
}


def sized(bounded: float, soak: float) -> float:
    """A duration or count: `bounded` in `make test`, `soak` under PULLTAG_SOAK=1."""
    return soak if SOAK else bounded


def secrets() -> dict[str, str]:
    """Every test password the harness hands out: registry users, Harbor accounts and robots, Redis."""
    found = {f"registry {user}": pw for user, pw in PASSWORDS.items()}
    found.update({f"harbor {user}": pw for user, pw in HARBOR_PASSWORDS.items()})
    found["redis"] = REDIS_PASSWORD
    return found


# ---------------------------------------------------------------------------------------------------
# The world


@contextlib.contextmanager
def chaos_world(workdir: Path, log_file: Path, **options: Any) -> Iterator[World]:
    """A fresh World with the chaos timings; every process's output is written to `log_file` at the end
    (also when the test failed) and remembered in CAPTURED_LOGS."""
    listener_config = {**CHAOS_LISTENER_CONFIG, **options.pop("listener_config", {})}
    options.setdefault("kubelet_transport", "inprocess")  # API faults are for pulltag, not the kubelet
    options.setdefault("with_harbor", False)
    world = World(workdir, listener_config=listener_config, **options)
    try:
        world.start()
        yield world
    finally:
        world.stop()
        capture_logs(world, log_file)


def capture_logs(world: World, log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        for name, text in world.process_logs().items():
            out.write(f"===== {name} =====\n{text}\n")
    CAPTURED_LOGS.append(log_file)


# ---------------------------------------------------------------------------------------------------
# Creating pods while things break


def create_pod(world: World, namespace: str, containers: dict[str, str], deadline: float = 60) -> Pod:
    """Create a pod as a controller would: retrying what the API server refused (500, 429, 503) or a
    connection that failed, with a short client backoff."""
    give_up = time.monotonic() + deadline
    delay = 0.05
    while True:
        try:
            return world.create_pod(namespace, containers, generate_name="web-", owner="web")
        except Exception as exc:  # RuntimeError for a status, requests' errors for a connection
            retryable = any(f"failed: {code}" in str(exc) for code in (429, 500, 503)) or not isinstance(
                exc, RuntimeError
            )
            if not retryable or time.monotonic() > give_up:
                raise
        time.sleep(delay)  # client retry backoff, not synchronisation
        delay = min(1.0, delay * 2)


@dataclass
class Rollout:
    """Pods created one after another, with new image versions now and then: several digests per
    repository, several pulls per digest (some "already present" on a node)."""

    world: World
    namespace: str = "shop"
    repositories: Sequence[str] = ("web", "api", "worker")
    new_version_every: int = 3
    pods: list[Pod] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    _count: int = 0
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def repo(self, name: str) -> str:
        return f"{self.namespace}/{name}-{self._run}"

    def step(self) -> Pod:
        name = self.repositories[self._count % len(self.repositories)]
        uses = self._count // len(self.repositories)  # how many pods this repository had before
        if name not in self.images or uses % self.new_version_every == 0:
            self.images[name] = self.world.push(self.repo(name), f"v{uses}")
        if "sidecar" not in self.images:
            self.images["sidecar"] = self.world.push(self.repo("sidecar"), "1")
        self._count += 1
        pod = create_pod(
            self.world, self.namespace, {"app": self.images[name], "sidecar": self.images["sidecar"]}
        )
        self.pods.append(pod)
        return pod

    def run(self, seconds: float, pace: float = 0.3) -> None:
        """Create pods for `seconds`, about one per `pace` seconds (the rollout's own rhythm)."""
        end = time.monotonic() + seconds
        while True:
            self.step()
            if time.monotonic() >= end:
                return
            time.sleep(pace)


@contextlib.contextmanager
def every(period: float, action: Callable[[], object], name: str = "chaos") -> Iterator[list[BaseException]]:
    """Run `action` every `period` seconds in the background while the block runs; yields the errors."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        while not stop.wait(period):
            try:
                action()
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(30)


# ---------------------------------------------------------------------------------------------------
# The final check


@dataclass(frozen=True)
class PulledDigest:
    registry: str
    repository: str
    digest: str
    namespace: str


def confirmed_pulls(world: World, pods: Sequence[Pod]) -> set[PulledDigest]:
    """What the kubelet really pulled for these pods: each container status's imageID."""
    pulled: set[PulledDigest] = set()
    for pod in pods:
        obj = world.api.try_get("pods", pod.name, pod.namespace)
        assert obj is not None, f"pod {pod.namespace}/{pod.name} is gone"
        status = obj.get("status") or {}
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for cs in status.get(key) or []:
                image_id = cs.get("imageID") or ""
                if "@" not in image_id:
                    continue
                ref = parse_reference(image_id)
                assert ref.digest
                pulled.add(PulledDigest(ref.registry, ref.repository, ref.digest, pod.namespace))
    return pulled


def deployed_tags_by_digest(world: World, registry: str, repository: str) -> dict[str, list[str]]:
    """Registry truth: the `deployed_` tags of a repository, grouped by the digest they point at."""
    by_digest: dict[str, list[str]] = defaultdict(list)
    if world.harbor is not None and registry == world.harbor.host:
        for digest, artifact in world.harbor.repositories.get(repository, {}).items():
            by_digest[digest] += [t for t in artifact.tags if t.startswith(f"{PREFIX}_")]
        return {d: sorted(t) for d, t in by_digest.items() if t}
    for tag in world.registry.list_tags(repository):
        if tag.startswith(f"{PREFIX}_"):
            tagged = world.registry.tag_digest(repository, tag)
            assert tagged, f"{repository}:{tag} vanished"
            by_digest[tagged].append(tag)
    return {d: sorted(t) for d, t in by_digest.items()}


def listeners_idle(world: World) -> bool:
    """Every running listener answers and has nothing queued."""
    for name, process in world.listeners.items():
        if process.running and world.metric("pulltag_queue_depth", listener=name) != 0:
            return False
    return True


def listener_complaints(world: World, lines: int = 40) -> str:
    """The last warning and error lines of every listener's log."""
    found: list[str] = []
    for name, text in world.process_logs().items():
        if "listener" in name:
            found += [f"{name}: {line}" for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    return "\n".join(found[-lines:]) or "(no warnings in the listener logs)"


def assert_exactly_tagged(
    world: World, pods: Sequence[Pod], *, timeout: float = 120, harbor_repositories: Sequence[str] = ()
) -> set[PulledDigest]:
    """Waits (with a generous deadline) until every confirmed pull is tagged and the listeners are idle,
    then checks registry truth: one tag per key, on the pulled digest, and nothing else tagged."""
    world.wait_pods_running(pods, timeout=timeout)
    pulled = confirmed_pulls(world, pods)
    assert pulled, "no pod pulled anything"
    expected: dict[tuple[str, str], set[PulledDigest]] = defaultdict(set)
    for p in pulled:
        expected[(p.registry, p.repository)].add(p)
    repositories = {(world.image_host, r) for r in world.repositories} | set(expected)
    if world.harbor is not None:
        repositories |= {(world.harbor.host, r) for r in harbor_repositories}

    def all_tagged() -> bool:
        for (registry, repository), wanted in expected.items():
            tagged = deployed_tags_by_digest(world, registry, repository)
            if not {p.digest for p in wanted} <= set(tagged):
                return False
        return True

    try:
        world.wait_for(all_tagged, timeout, f"all {len(pulled)} pulled digests to be tagged")
        world.wait_for(lambda: listeners_idle(world), timeout, "the listeners to be idle")
    except TimeoutError as exc:
        # CI shows only this message: say what is missing and what the listeners complained about.
        missing = [
            f"{registry}/{repository}@{p.digest}"
            for (registry, repository), wanted in sorted(expected.items())
            for p in sorted(wanted, key=lambda p: p.digest)
            if p.digest not in deployed_tags_by_digest(world, registry, repository)
        ]
        raise AssertionError(f"{exc}\nnot tagged: {missing}\n{listener_complaints(world)}") from None

    problems: list[str] = []
    for registry, repository in sorted(repositories):
        tagged = deployed_tags_by_digest(world, registry, repository)
        wanted = {p.digest: p for p in expected.get((registry, repository), set())}
        for digest, tags in sorted(tagged.items()):
            if digest not in wanted:
                problems.append(
                    f"{registry}/{repository}@{digest}: tagged {tags} but no admitted pod pulled it"
                )
            elif len(tags) != 1:
                problems.append(f"{registry}/{repository}@{digest}: {len(tags)} tags for one key: {tags}")
            else:
                match = TAG_RE.fullmatch(tags[0])
                if match is None or match.group("ns") not in {p.namespace for p in pulled}:
                    problems.append(f"{registry}/{repository}@{digest}: unexpected tag name {tags[0]}")
        for digest in sorted(set(wanted) - set(tagged)):
            problems.append(f"{registry}/{repository}@{digest}: pulled but not tagged")
    assert not problems, "\n".join(problems)
    return pulled
