"""Credentials never show up in logs, metrics or errors.

A World with a password-protected Redis store tags through both registries with the right credentials;
then a listener runs (at DEBUG) with wrong ones, the CLI's `registry check`, `tag` and `history` run with
wrong and right ones, and the registry clients raise with wrong ones. Everything they wrote — the
webhook's and both listeners' logs, both /metrics, the CLI's output, the errors (text, repr, traceback),
the ImageTagFailed events and the ledger — is searched for every secret involved: the registry users'
passwords, the Harbor robot secrets, the refresh token, the wrong passwords, the Redis password, and the
base64 of each user:password pair as a Basic header carries it.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from listener.registry import Credentials, RegistryError, registry_client
from pulltag.config import RegistrySettings
from tests.harness.dockerconfig import StaticKeyring, write_docker_config
from tests.harness.harbor import HARBOR_PASSWORDS
from tests.harness.procs import ManagedProcess, free_port
from tests.harness.registry import PASSWORDS, REFRESH_TOKENS
from tests.harness.world import SYSTEM_NS, World, _http_ok
from tests.security.conftest import REDIS_PASSWORD, SecretRedisWorld, https_get

pytestmark = pytest.mark.timeout(150)

WRONG_OCI = "wrong-oci-pw-" + secrets.token_hex(6)
WRONG_HARBOR = "wrong-robot-secret-" + secrets.token_hex(6)
WRONG_REFRESH = "wrong-refresh-token-" + secrets.token_hex(8)


def _secrets() -> dict[str, str]:
    """Every secret, by a name for the failure message (never the value itself)."""
    found: dict[str, str] = {"redis password": REDIS_PASSWORD}
    pairs = [("oci", user, pw) for user, pw in PASSWORDS.items()]
    pairs += [("harbor", user, pw) for user, pw in HARBOR_PASSWORDS.items()]
    pairs += [("wrong oci", "admin", WRONG_OCI), ("wrong harbor", "robot$pulltag", WRONG_HARBOR)]
    for where, user, password in pairs:
        found[f"{where} password of {user}"] = password
        raw = f"{user}:{password}".encode()
        found[f"{where} basic header of {user}"] = base64.b64encode(raw).decode()
        found[f"{where} basic header of {user} (url-safe)"] = (
            base64.urlsafe_b64encode(raw).decode().rstrip("=")
        )
    for n, token in enumerate([*REFRESH_TOKENS, WRONG_REFRESH]):
        found[f"refresh token {n}"] = token
    return found


def _write_config(world: World, name: str, oci: Credentials, harbor: Credentials) -> Path:
    """The World's configuration with other credentials for both registries."""
    assert world.harbor is not None
    folder = world.workdir / "security-configs"
    folder.mkdir(parents=True, exist_ok=True)
    oci_file = write_docker_config(folder / f"{name}-oci.json", {world.registry.host: oci})
    harbor_file = write_docker_config(folder / f"{name}-harbor.json", {world.harbor.host: harbor})
    config = world.config
    config["registries"] = [
        {**config["registries"][0], "credentials": str(oci_file)},
        {**config["registries"][1], "credentials": str(harbor_file)},
    ]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cli(*argv: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pulltag", *argv, "--log-level", "DEBUG"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PULLTAG_STORE_URL": "", "PULLTAG_CONFIG": ""},
    )
    return done.returncode, f"$ pulltag {' '.join(argv)}\n{done.stdout}\n{done.stderr}\n"


def _error_text(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), repr(err.args), repr(vars(err)), *traceback.format_exception(err)])


@pytest.fixture(scope="module")
def corpus(secret_world: SecretRedisWorld) -> Iterator[dict[str, str]]:
    """Runs the whole scenario once; yields what each part wrote, by part."""
    world = secret_world
    assert world.harbor is not None and world.listener is not None and world.webhook.process is not None
    texts: dict[str, str] = {}

    # 1. Right credentials: both registries tag through the chain.
    repo = f"shop/cred-{uuid.uuid4().hex[:6]}"
    image = world.push(repo, "1")
    harbor_repo = f"library/cred-{uuid.uuid4().hex[:6]}"
    harbor_digest = world.harbor.add_artifact(harbor_repo, ["1.0"])
    harbor_image = f"{world.harbor.host}/{harbor_repo}:1.0"
    pods = [world.create_pod("shop", {"app": image}, generate_name="cred-"),
            world.create_pod("shop", {"app": harbor_image}, generate_name="cred-hb-")]  # fmt: skip
    world.wait_pods_running(pods)
    world.wait_for(lambda: world.metric("pulltag_tags_total", outcome="created") >= 2, 60, "both tags")
    texts["listener /metrics (right credentials)"] = world.metrics()
    world.listener.stop()
    texts["listener log (right credentials)"] = world.listener.log_path.read_text(errors="replace")

    # 2. A listener at DEBUG with wrong credentials for both registries.
    wrong = _write_config(
        world, "wrong", Credentials("admin", WRONG_OCI), Credentials("robot$pulltag", WRONG_HARBOR)
    )
    listener = _start_listener(world, wrong)
    try:
        failed_before = world.metric("pulltag_tags_total", outcome="failed")
        repo2 = f"shop/cred-wrong-{uuid.uuid4().hex[:6]}"
        image2 = world.push(repo2, "1")
        harbor_repo2 = f"library/cred-wrong-{uuid.uuid4().hex[:6]}"
        world.harbor.add_artifact(harbor_repo2, ["1.0"])
        pods = [world.create_pod("shop", {"app": image2}, generate_name="cred-w-"),
                world.create_pod("shop", {"app": f"{world.harbor.host}/{harbor_repo2}:1.0"},
                                 generate_name="cred-whb-")]  # fmt: skip
        world.wait_pods_running(pods)
        world.wait_for(
            lambda: world.metric("pulltag_tags_total", outcome="failed") >= failed_before + 2,
            60,
            "both tags to fail with the wrong credentials",
        )
        texts["listener /metrics (wrong credentials)"] = world.metrics()
    finally:
        listener.stop()
    texts["listener log (wrong credentials, DEBUG)"] = listener.log_path.read_text(errors="replace")
    texts["ImageTagFailed events"] = json.dumps(world.events("ImageTagFailed"))

    # 3. The CLI, wrong and right, and the identity-token variant.
    identity = _write_config(
        world,
        "identity",
        Credentials(identity_token=WRONG_REFRESH),
        Credentials("robot$pulltag", WRONG_HARBOR),
    )
    right_refresh = _write_config(
        world,
        "refresh",
        Credentials(identity_token=next(iter(REFRESH_TOKENS))),
        Credentials("robot$pulltag", HARBOR_PASSWORDS["robot$pulltag"]),
    )
    runs = [
        _cli("registry", "check", "--config", str(wrong)),
        _cli("registry", "check", "--config", str(wrong), "--repository", repo),
        _cli("registry", "check", "--config", str(identity), "--repository", repo),
        _cli("registry", "check", "--config", str(right_refresh)),
        _cli("registry", "check", "--config", str(world.config_path), "--repository", harbor_repo),
        _cli("tag", image, "manual-wrong", "--config", str(wrong)),
        _cli("tag", harbor_image, "manual-wrong", "--config", str(wrong)),
        _cli("tag", image, "manual-identity", "--config", str(identity)),
        _cli("tag", image, "manual-right", "--config", str(world.config_path)),
        _cli("history", "--config", str(world.config_path)),
        _cli("history", "--json", "--config", str(world.config_path)),
    ]
    texts["CLI"] = "".join(out for _, out in runs)
    codes = [code for code, _ in runs]
    # wrong credentials fail; right ones work (so the outputs above are the real paths, not early exits)
    assert codes == [1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0], f"{codes}\n{texts['CLI']}"
    assert "manual-right" in world.registry.list_tags(repo)
    assert "manual-wrong" not in world.registry.list_tags(repo)

    # 4. The clients' own errors with wrong credentials.
    errors: list[str] = []
    digest = world.registry.tag_digest(repo, "1")
    assert digest
    wrong_oci = RegistrySettings(**{**world.registry.settings("admin").__dict__, "credentials": None})
    for settings_, creds, repository, dig in (
        (wrong_oci, Credentials("admin", WRONG_OCI), repo, digest),
        (wrong_oci, Credentials(identity_token=WRONG_REFRESH), repo, digest),
        (world.harbor.settings(None), Credentials("robot$pulltag", WRONG_HARBOR), harbor_repo, harbor_digest),
        (world.harbor.settings(None), Credentials("robot$readonly", HARBOR_PASSWORDS["robot$readonly"]),
         harbor_repo, harbor_digest),
        (wrong_oci, Credentials("reader", PASSWORDS["reader"]), repo, digest),
    ):  # fmt: skip
        keyring = StaticKeyring(creds)
        with registry_client(settings_, keyring=keyring) as client:
            calls: list[tuple[str, tuple[str, ...]]] = [
                ("create_tag", (repository, dig, "deployed_never")),
                ("check", (repository,)),
                ("tags_on", (repository, dig, "deployed")),
            ]
            for method, arguments in calls:
                try:
                    getattr(client, method)(*arguments)
                except RegistryError as err:
                    errors.append(_error_text(err))
    texts["client errors"] = "\n".join(errors)
    assert len(errors) >= 8 and any("AuthenticationFailed" in e for e in errors), texts["client errors"]

    # 5. The webhook: its log and /metrics.
    texts["webhook /metrics"] = https_get(world.webhook.port, "/metrics", world.webhook.ca_file)
    texts["webhook log"] = world.webhook.process.log_path.read_text(errors="replace")
    yield texts


def _start_listener(world: World, config: Path) -> ManagedProcess:
    """A listener process as the World starts one, with another configuration and at DEBUG."""
    token = world.api.add_service_account_token(SYSTEM_NS, "pulltag-listener")
    kubeconfig = world.api.write_kubeconfig(world.workdir / "listener-wrong.kubeconfig", token=token)
    world.metrics_port = port = free_port()
    argv = [
        sys.executable, "-m", "pulltag", "listener", "--config", str(config),
        "--metrics-bind", f"127.0.0.1:{port}", "--log-level", "DEBUG",
    ]  # fmt: skip
    env = {
        "KUBECONFIG": kubeconfig,
        "POD_NAMESPACE": SYSTEM_NS,
        "POD_NAME": f"listener-wrong-{uuid.uuid4().hex[:5]}",
        "PULLTAG_STORE_URL": "",
        "PULLTAG_CONFIG": "",
    }
    process = ManagedProcess("listener-wrong", argv, world.workdir / "listener-wrong", env=env).start()
    try:
        process.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=30)
    except BaseException:
        process.stop()
        raise
    return process


def test_the_scenario_produced_something_to_search(corpus: dict[str, str]) -> None:
    assert "pulltag_tags_total" in corpus["listener /metrics (wrong credentials)"]
    assert "pulltag_admission_requests_total" in corpus["webhook /metrics"]
    assert "ImageTagFailed" in corpus["ImageTagFailed events"]
    assert "DEBUG" in corpus["listener log (wrong credentials, DEBUG)"]
    assert "FAILED" in corpus["CLI"] and "created" in corpus["CLI"]


@pytest.mark.parametrize("part", [
    "listener log (right credentials)", "listener /metrics (right credentials)",
    "listener log (wrong credentials, DEBUG)", "listener /metrics (wrong credentials)",
    "ImageTagFailed events", "CLI", "client errors", "webhook /metrics", "webhook log",
])  # fmt: skip
def test_no_secret_appears(corpus: dict[str, str], part: str) -> None:
    text = corpus[part]
    leaked = [name for name, value in _secrets().items() if value in text]
    assert not leaked, f"{part} holds: {', '.join(leaked)}"
