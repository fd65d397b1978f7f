"""The product as a user installs it: a wheel built from the source tree, installed with its declared
dependencies in a clean virtualenv (no system site-packages), imported from a folder outside the tree
with `python -I` (neither the current folder nor PYTHONPATH on sys.path). Every product module must
import from the installed copy, and nothing may need `tests/`, which is not packaged.

Building and installing takes half a minute (the dependencies come from pip's cache or the index), so
one virtualenv serves every test of this file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("pulltag", "webhook", "listener")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    venv: Path
    outside: Path  # a folder outside the source tree to run from

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env = {k: v for k, v in env.items() if not k.startswith("PULLTAG_")}
        return subprocess.run(
            list(argv), cwd=self.outside, env=env, capture_output=True, text=True, timeout=120
        )


def _step(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    # Build from a copy of what the package is made of (the top-level files such as pyproject.toml,
    # README and licence, and the product packages), so the build leaves nothing in the source tree.
    source = base / "source"
    source.mkdir()
    for path in ROOT.iterdir():
        if path.is_file():
            shutil.copy2(path, source / path.name)
    for package in PRODUCT:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    _step([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), "."], source)
    (wheel,) = (base / "dist").glob("pulltag-*.whl")
    venv = base / "venv"
    _step([sys.executable, "-m", "venv", str(venv)], base)  # --system-site-packages is off by default
    python = venv / "bin" / "python"
    _step([str(python), "-m", "pip", "install", "-q", str(wheel)], base)
    outside = base / "elsewhere"
    outside.mkdir()
    yield Installed(wheel, python, venv, outside)


def _source_modules() -> set[str]:
    modules = set()
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _wheel_modules(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".py")]
    modules = set()
    for name in names:
        parts = name[: -len(".py")].split("/")
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_the_wheel_holds_every_product_module_and_nothing_else(installed: Installed) -> None:
    in_wheel = _wheel_modules(installed.wheel)
    assert in_wheel == _source_modules()
    assert not any(m == "tests" or m.startswith("tests.") for m in in_wheel)


IMPORT_ALL = """
import importlib, json, sys
modules = json.loads(sys.argv[1])
failed, where = {}, {}
for name in modules:
    try:
        where[name] = importlib.import_module(name).__file__
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "where": where, "tests": "tests" in sys.modules, "path": sys.path}))
"""


def test_every_product_module_imports_from_the_installed_wheel(installed: Installed) -> None:
    # `__main__` runs the program when imported: it is run below as `python -m pulltag` instead.
    modules = sorted(m for m in _wheel_modules(installed.wheel) if not m.endswith(".__main__"))
    assert len(modules) >= 30  # the whole product, not an empty wheel
    proc = installed.run(str(installed.python), "-I", "-c", IMPORT_ALL, json.dumps(modules))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["failed"] == {}
    assert not report["tests"], "a product module imported the test tree"
    assert not any(str(ROOT) in entry for entry in report["path"])
    site = str(installed.venv)
    outside = {name: path for name, path in report["where"].items() if not path.startswith(site)}
    assert outside == {}, "imported from outside the virtualenv"


def test_the_installed_command_runs(installed: Installed) -> None:
    pulltag = str(installed.venv / "bin" / "pulltag")
    version = installed.run(pulltag, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("pulltag ")
    as_module = installed.run(str(installed.python), "-I", "-m", "pulltag", "--version")
    assert as_module.returncode == 0 and as_module.stdout == version.stdout, as_module.stderr
    helped = installed.run(pulltag, "--help")
    assert helped.returncode == 0 and "history" in helped.stdout and "demo" not in helped.stdout
    # a read-only command on a store that is not there: one line, no traceback, nothing created
    missing = installed.outside / "state" / "pulltag.db"
    proc = installed.run(pulltag, "--config", str(_config(installed, missing)), "history")
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not missing.parent.exists()


def _config(installed: Installed, store: Path) -> Path:
    path = installed.outside / "pulltag.yaml"
    path.write_text(f"store: {{url: 'sqlite:///{store}'}}\n")
    return path
