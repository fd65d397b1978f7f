"""The wrapper `make test` uses must fail when pytest runs no test (exit 5, or everything skipped)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, body: str) -> int:
    (tmp_path / "test_x.py").write_text(body)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.run_pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode


def test_no_tests_collected_fails(tmp_path: Path) -> None:
    assert _run(tmp_path, "x = 1\n") != 0


def test_everything_skipped_fails(tmp_path: Path) -> None:
    assert _run(tmp_path, "import pytest\n\n@pytest.mark.skip\ndef test_a():\n    pass\n") != 0


def test_a_passing_test_passes(tmp_path: Path) -> None:
    assert _run(tmp_path, "def test_a():\n    assert True\n") == 0


def test_a_failing_test_fails(tmp_path: Path) -> None:
    assert _run(tmp_path, "def test_a():\n    assert False\n") == 1
