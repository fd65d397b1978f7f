"""Fixtures of the chaos suite: one fresh world per test, its process logs captured at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos import chaos_world
from tests.harness.world import World

MakeWorld = Callable[..., World]


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[MakeWorld]:
    """`make_world(**World options)` starts this test's world; it is stopped and its logs written to
    `tmp_path/process-logs.txt` when the test ends."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> World:
            return stack.enter_context(
                chaos_world(tmp_path / "world", tmp_path / "process-logs.txt", **options)
            )

        yield make
