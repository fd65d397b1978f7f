"""Last of the chaos suite (files run in name order): no test password (registry users, Harbor accounts
and robots, the Redis password) appears in the output of any process of any chaos world of this run."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import CAPTURED_LOGS, secrets


def test_no_secret_appears_in_any_captured_log() -> None:
    if not CAPTURED_LOGS:
        pytest.skip("no chaos scenario ran in this session")
    leaks = [
        f"{path}: the {what} password"
        for path in CAPTURED_LOGS
        for what, secret in secrets().items()
        if secret in path.read_text(errors="replace")
    ]
    assert not leaks, "\n".join(leaks)
