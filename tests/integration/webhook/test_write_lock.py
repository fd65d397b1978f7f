"""The webhook's writers of one SQLite file take turns on a file lock, across processes (real SQLite
files, real processes), and a writer held up by that lock still answers within the budget."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from pulltag.store import Store, open_store
from pulltag.store.base import AdmissionRecord, StoreUnavailable
from webhook.recorder import FileWriteLock, Recorder, WriteResult, write_lock_for

WRITES = 300


def _open_without_busy_wait(url: str) -> Store:
    # No busy wait at all: without turns, a write meeting the other process's transaction fails at once.
    # Opening writes the schema (idempotently), which may meet the other child's opening: try again.
    deadline = time.monotonic() + 10
    while True:
        try:
            return open_store(url, timeout_seconds=0)
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # the other child is opening the same file; try again until the deadline


def _write_many(url: str, prefix: str, start: Any, out: Any) -> None:
    """In a child process, as a gunicorn worker: its own store and recorder; the result of each write."""
    try:
        store = _open_without_busy_wait(url)
        recorder = Recorder(store, budget_seconds=30, write_lock=write_lock_for(url))
        start.wait(10)  # both children write at the same time
        results = []
        for n in range(WRITES):
            record = AdmissionRecord(uid=f"{prefix}-{n}", namespace="ns", name=f"{prefix}-{n}")
            result, reason = recorder.put_admission(record)
            results.append(result.value if result is WriteResult.OK else f"{result.value}: {reason}")
        recorder.close()
        store.close()
        out.put(results)
    except BaseException as exc:  # reported to the test, never a hang
        out.put([f"crash: {exc!r}"])


def test_writers_in_two_processes_take_turns_instead_of_failing_on_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    open_store(url).close()  # the schema, once
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(2), context.Queue()
    children = [context.Process(target=_write_many, args=(url, p, start, out)) for p in "ab"]
    for child in children:
        child.start()
    outcomes = [out.get(timeout=60), out.get(timeout=60)]
    for child in children:
        child.join(timeout=10)
    failed = [o for results in outcomes for o in results if o != "ok"]
    assert failed == []
    reader = open_store(url)
    missing = [f"{p}-{n}" for p in "ab" for n in range(WRITES) if reader.get_admission(f"{p}-{n}") is None]
    assert missing == []
    reader.close()


def test_a_writer_held_up_by_the_lock_answers_within_the_budget_and_writes_later(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    store = open_store(url)
    lock = write_lock_for(url)
    assert lock is not None
    recorder = Recorder(store, budget_seconds=0.05, write_lock=lock)
    # Another worker holds the lock and does not let go (its store hangs).
    holder = os.open(f"{tmp_path}/store.db.webhook-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        result, reason = recorder.put_admission(AdmissionRecord(uid="held", namespace="ns", name="p"))
        assert result is WriteResult.TIMEOUT, reason
        assert store.get_admission("held") is None
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    recorder.close()  # the queued record is still written once the lock is free
    assert _wait_for_record(store, "held") is not None
    store.close()


def _wait_for_record(store: Store, uid: str) -> AdmissionRecord | None:
    deadline = time.monotonic() + 10
    while (record := store.get_admission(uid)) is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition with a deadline
    return record


def test_only_an_sqlite_store_gets_a_lock_file(tmp_path: Path) -> None:
    lock = write_lock_for(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(lock, FileWriteLock) and lock.path == f"{tmp_path}/x.db.webhook-lock"
    assert write_lock_for("redis://127.0.0.1:6379/0") is None
