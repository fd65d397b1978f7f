"""The Dockerfile: python:3.11-slim, multi-stage, runtime dependencies only, user 10001, `pulltag`
entrypoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.unit.manifests.render import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")
        ),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(DOCKERFILE):
        if instruction[0] == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append(instruction)
    return stages


def test_multi_stage_on_python_311_slim() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        assert stage[0][1].split()[0] == "python:3.11-slim"
    assert stages[0][0][1].split()[-1] == "build"


def test_build_stage_makes_a_wheel_and_installs_runtime_deps_only() -> None:
    build = " ".join(args for _, args in _stages()[0])
    assert "pip wheel" in build
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "[test]" not in text and "pytest" not in text
    assert "-e " not in build  # not an editable install


def test_runtime_stage_non_root_with_pulltag_entrypoint() -> None:
    final = _stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user == "10001"  # numeric, so that runAsNonRoot can check it
    (entrypoint,) = [args for word, args in final if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["pulltag"]
    copies = [args for word, args in final if word == "COPY"]
    assert copies and all(c.startswith("--from=build") for c in copies), (
        "runtime gets only the build's output"
    )
    assert "useradd" in " ".join(args for word, args in final if word == "RUN")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"  # everything out, then only what the build copies back in
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "pulltag", "webhook", "listener"}
    copied: set[str] = set()
    for word, args in _stages()[0]:
        if word == "COPY" and not args.startswith("--from"):
            copied.update(p.rstrip("/") for p in args.split()[:-1])
    assert copied == allowed
