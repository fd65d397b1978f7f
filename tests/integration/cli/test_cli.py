"""The `pulltag` command as a user runs it: a real process, a real store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulltag import __version__
from pulltag.store import AdmissionRecord, LedgerEntry, open_store

COMMANDS = [
    ["webhook"],
    ["listener"],
    ["certs"],
    ["history"],
    ["admissions"],
    ["tag"],
    ["registry"],
    ["registry", "check"],
]


def pulltag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PULLTAG_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pulltag", *args], capture_output=True, text=True, timeout=60, env=full_env
    )


def test_version() -> None:
    proc = pulltag("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"pulltag {__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    proc = pulltag(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: pulltag {' '.join(command)}")


def test_no_command_prints_help_and_fails() -> None:
    proc = pulltag()
    assert proc.returncode == 2
    assert "COMMAND" in proc.stdout


def _fill(url: str) -> None:
    store = open_store(url)
    now = time.time()
    store.put_admission(
        AdmissionRecord(
            uid="u-1",
            namespace="shop",
            name="web-abc12",
            images={
                "containers": {"app": "registry.local:5000/shop/web:1.0"},
                "initContainers": {"init": "busybox"},
            },
            owner="ReplicaSet/web-7d4b9c",
            node="node-1",
            admitted_at=now - 10,
        )
    )
    store.put_admission(AdmissionRecord(uid="u-2", namespace="ops", name="job-x", admitted_at=now - 5))
    digest = "sha256:" + "ab" * 32
    for i, (ns, outcome) in enumerate([("shop", "created"), ("ops", "skipped"), ("shop", "exists")]):
        store.append_ledger(
            LedgerEntry(
                image="registry.local:5000/shop/web",
                digest=digest,
                tag=f"deployed_{ns}_2026112{i}-101502",
                namespace=ns,
                pod=f"web-{i}",
                node="node-1",
                pulled_at=now - 100 + i,
                tagged_at=now - 50 + i,
                outcome=outcome,  # type: ignore[arg-type]
                reason="" if outcome == "created" else "tag with prefix exists",
            )
        )
    store.append_ledger(
        LedgerEntry(
            image="docker.io/library/nginx",
            digest="sha256:" + "cd" * 32,
            tag="deployed_shop_x",
            namespace="shop",
            pod="n",
            node="node-2",
            pulled_at=now,
            tagged_at=now,
            outcome="failed",
            reason="registry refused",
        )
    )
    store.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pulltag.db"
    url: str = request.getfixturevalue("redis_url")
    return url


def test_history_reads_the_ledger(store_url: str) -> None:
    _fill(store_url)
    env = {"PULLTAG_STORE_URL": store_url}
    table = pulltag("history", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TAGGED", "(UTC)", "OUTCOME", "NAMESPACE", "POD", "IMAGE", "TAG", "REASON"]
    assert len(lines) == 5
    assert "failed" in lines[1] and "nginx" in lines[1]  # newest first

    as_json = pulltag("history", "--json", "--namespace", "shop", env=env)
    entries = json.loads(as_json.stdout)
    assert [e["namespace"] for e in entries] == ["shop", "shop", "shop"]
    assert [e["outcome"] for e in entries] == ["failed", "exists", "created"]

    by_image = pulltag("history", "--json", "--image", "registry.local:5000/shop/web:1.0", env=env)
    tags = [e["tag"] for e in json.loads(by_image.stdout)]
    assert tags == [
        "deployed_shop_20261122-101502",
        "deployed_ops_20261121-101502",
        "deployed_shop_20261120-101502",
    ]

    familiar = pulltag("history", "--json", "--image", "nginx", env=env)
    assert [e["outcome"] for e in json.loads(familiar.stdout)] == ["failed"]


def test_history_rejects_a_bad_image(store_url: str) -> None:
    proc = pulltag("history", "--image", "UPPER/Case", env={"PULLTAG_STORE_URL": store_url})
    assert proc.returncode == 2
    assert "--image" in proc.stderr


def test_admissions_lists_records(store_url: str) -> None:
    _fill(store_url)
    env = {"PULLTAG_STORE_URL": store_url}
    table = pulltag("admissions", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 3
    assert "job-x" in lines[1] and "web-abc12" in lines[2]
    assert "app=registry.local:5000/shop/web:1.0" in lines[2]
    only = pulltag("admissions", "--json", "--namespace", "shop", env=env)
    records = json.loads(only.stdout)
    assert [(r["uid"], r["owner"], r["node"]) for r in records] == [
        ("u-1", "ReplicaSet/web-7d4b9c", "node-1")
    ]


def test_unreachable_store_is_one_clear_line_without_the_password() -> None:
    from tests.harness.procs import free_port

    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    proc = pulltag("history", env={"PULLTAG_STORE_URL": url})
    assert proc.returncode == 1
    assert "store unavailable" in proc.stderr
    assert "hunter2secret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_demo_is_not_a_product_command() -> None:
    # The demo stands on tests/harness, which is not installed: it is `make demo`, not `pulltag demo`.
    proc = pulltag("demo")
    assert proc.returncode == 2
    assert "invalid choice: 'demo'" in proc.stderr


@pytest.mark.parametrize("command", ["history", "admissions"])
def test_json_on_an_empty_store_is_an_empty_array(store_url: str, command: str) -> None:
    open_store(store_url).close()  # the store exists (the webhook and listener made it) but holds nothing
    proc = pulltag(command, "--json", env={"PULLTAG_STORE_URL": store_url})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_json_output_is_one_array(store_url: str) -> None:
    _fill(store_url)
    proc = pulltag("history", "--json", env={"PULLTAG_STORE_URL": store_url})
    entries = json.loads(proc.stdout)
    assert isinstance(entries, list) and len(entries) == 4
    assert {e["outcome"] for e in entries} == {"created", "skipped", "exists", "failed"}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pulltag.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_work_before_and_after_the_command(tmp_path: Path, where: str) -> None:
    store = f"sqlite:///{tmp_path}/pulltag.db"
    _fill(store)
    config = _config(tmp_path, f"store: {{url: '{store}'}}\n")
    options = ["--config", str(config), "--log-level", "DEBUG", "--log-format", "json"]
    argv = [*options, "history", "--json"] if where == "before" else ["history", "--json", *options]
    proc = pulltag(*argv)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 4  # read the store the --config file names


def test_an_option_after_the_command_wins_over_one_before(tmp_path: Path) -> None:
    good = _config(tmp_path, "tagging: {prefix: ok}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tagging: {scope: galaxy}\n")
    proc = pulltag("--config", str(good), "history", "--config", str(bad))
    assert proc.returncode == 2
    assert "tagging.scope" in proc.stderr
    # and the one before is not reset by the subcommand's default when the subcommand does not repeat it
    before_only = pulltag("--config", str(bad), "registry", "check")
    assert before_only.returncode == 2 and "tagging.scope" in before_only.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["registry", "check"],
        ["tag", "r.example.com/a/b:1", "x"],
        ["listener", "--no-leader-election"],
    ],
    ids=" ".join,
)
def test_a_missing_ca_file_stops_registry_commands_at_start(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-such-ca.pem"
    config = _config(tmp_path, f"registries:\n  - host: r.example.com\n    ca_file: {missing}\n")
    for argv in (["--config", str(config), *command], [*command, "--config", str(config)]):
        proc = pulltag(*argv)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"pulltag: config: registries[0].ca_file: no such file: {missing}"
        ]


def test_a_ca_file_that_is_a_directory_is_named(tmp_path: Path) -> None:
    config = _config(tmp_path, f"registries:\n  - host: r.example.com\n    ca_file: {tmp_path}\n")
    proc = pulltag("registry", "check", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"pulltag: config: registries[0].ca_file: cannot read {tmp_path}: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_commands_without_registries_do_not_need_the_ca_file(tmp_path: Path) -> None:
    # The webhook reads the same config but mounts no registry CA: only registry commands check it.
    store = f"sqlite:///{tmp_path}/pulltag.db"
    open_store(store).close()
    config = _config(
        tmp_path,
        f"store: {{url: '{store}'}}\nregistries:\n  - host: r.example.com\n    ca_file: /no/such/ca.pem\n",
    )
    proc = pulltag("history", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no tag history"


@pytest.mark.parametrize("command", ["history", "admissions"])
def test_read_only_commands_never_create_a_store(tmp_path: Path, command: str) -> None:
    url = f"sqlite:///{tmp_path}/not/there/pulltag.db"
    for json_flag in ([], ["--json"]):
        proc = pulltag(command, *json_flag, env={"PULLTAG_STORE_URL": url})
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert url in lines[0] and "does not exist" in lines[0]
        assert proc.stdout == ""
    assert not (tmp_path / "not").exists()  # no directory made either


def test_the_demo_runs_from_the_checkout() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m tests.demo") and "--keep" in proc.stdout
