"""Background checkpoints (`checkpoint_in_background`, the webhook's store): no commit checkpoints the
WAL, a thread of each process does. Observed through the database file alone: a copy of it without its
WAL holds only what a checkpoint has copied there."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pulltag.store import AdmissionRecord
from pulltag.store.sqlite import SQLiteStore
from pulltag.store.sqlite_checkpoint import BackgroundCheckpointer
from tests.harness.procs import wait_for
from tests.harness.sqlite_file import rows_in_file

# Enough one-record transactions to cross SQLite's automatic checkpoint (1,000 WAL pages) several times.
WRITES = 600


def _checkpointed(path: Path) -> int:
    return rows_in_file(path, "admissions")


def _write(store: SQLiteStore, prefix: str, count: int = WRITES) -> None:
    for n in range(count):
        store.put_admission(AdmissionRecord(uid=f"{prefix}-{n}", namespace="ns", name=f"{prefix}-{n}"))


@pytest.mark.parametrize("background", [False, True], ids=["automatic", "background"])
def test_commits_checkpoint_only_without_background_checkpoints(tmp_path: Path, background: bool) -> None:
    path = tmp_path / "pulltag.db"
    # An interval no test waits for: the thread runs, but no round comes within the test.
    store = SQLiteStore(f"sqlite:///{path}", checkpoint_in_background=background, checkpoint_interval=3600)
    _write(store, "p")
    in_file = _checkpointed(path)
    if background:
        assert in_file == 0, "a commit checkpointed the WAL"
    else:
        assert in_file > 0, "SQLite's automatic checkpoint did not run in the commits"
    assert store.get_admission(f"p-{WRITES - 1}") is not None  # readers see every commit either way
    store.close()


def test_the_thread_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "pulltag.db"
    store = SQLiteStore(f"sqlite:///{path}", checkpoint_in_background=True, checkpoint_interval=0.05)
    _write(store, "p")
    wait_for(lambda: _checkpointed(path) == WRITES, 20, "every record checkpointed into the file")
    assert store.checkpointer is not None and store.checkpointer.failures == 0
    store.close()


def _child_writes(store: SQLiteStore, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    _write(store, "child")  # the store object inherited over the fork, as a gunicorn worker has it
    checkpointer = store.checkpointer
    assert checkpointer is not None
    thread = checkpointer._thread
    # this process's own thread: the parent's does not run here (threads do not survive a fork)
    assert thread is not None and thread.is_alive()
    wait_for(lambda: checkpointer.rounds > 0, 20, "a round in the child")
    done.put(checkpointer.rounds)
    store.close()


def test_a_forked_process_runs_its_own_thread(tmp_path: Path) -> None:
    path = tmp_path / "pulltag.db"
    store = SQLiteStore(f"sqlite:///{path}", checkpoint_in_background=True, checkpoint_interval=0.05)
    store.put_admission(AdmissionRecord(uid="parent", namespace="ns", name="parent"))  # parent's thread
    assert store.checkpointer is not None
    store.checkpointer.stop()  # from here on only the child's thread can checkpoint
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    child = context.Process(target=_child_writes, args=(store, done))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert done.get(timeout=1) > 0
    wait_for(lambda: _checkpointed(path) == WRITES + 1, 20, "the child's records in the file")


def test_a_failed_round_is_logged_once_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    real = sqlite3.connect(tmp_path / "x.db", check_same_thread=False)
    real.execute("PRAGMA journal_mode = WAL")
    attempts = {"n": 0}

    def connect() -> sqlite3.Connection:
        attempts["n"] += 1
        if attempts["n"] <= 3:  # the file cannot be opened, then it can
            raise sqlite3.OperationalError("unable to open database file")
        return real

    checkpointer = BackgroundCheckpointer(connect, "sqlite:///x.db", interval=0.01)
    with caplog.at_level(logging.WARNING, logger="pulltag.store.sqlite_checkpoint"):
        checkpointer.ensure_running()
        wait_for(lambda: checkpointer.rounds >= 2, 10, "rounds succeeding after the failures")
        checkpointer.stop()
    assert checkpointer.failures == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "pulltag.store.sqlite_checkpoint"]
    assert len(warnings) == 1, warnings  # at most one a minute while failures last
    assert "unable to open database file" in warnings[0] and "trying again every 0.01s" in warnings[0]
    real.close()


def test_stop_ends_the_thread(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/p.db", checkpoint_in_background=True, checkpoint_interval=0.01)
    store.put_admission(AdmissionRecord(uid="u", namespace="ns", name="p"))
    checkpointer = store.checkpointer
    assert checkpointer is not None
    thread = checkpointer._thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()
    store.put_admission(AdmissionRecord(uid="v", namespace="ns", name="q"))  # used again: runs again
    assert checkpointer._thread is not None and checkpointer._thread.is_alive()
    store.close()


def test_an_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        SQLiteStore(f"sqlite:///{tmp_path}/p.db", checkpoint_in_background=True, checkpoint_interval=0)
