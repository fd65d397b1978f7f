"""Claims are exclusive across processes and threads; SQLite survives forks and racing first opens."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pulltag.store import AdmissionRecord, Store, open_store

PROCESSES = 8
CLAIMS_PER_PROCESS = 1_000
KEYS = 100
JOIN_TIMEOUT = 60.0

# fork: the children inherit a store the parent has already used, which is the gunicorn case
# (workers forked after the app opened the store) and exercises the pid-change reconnect.
_fork = multiprocessing.get_context("fork")


def _key_order(worker: int, count: int) -> list[str]:
    """Each worker walks the keys from a different offset, so they collide all the time."""
    return [f"key-{(worker * 37 + i) % KEYS}" for i in range(count)]


def _claim_worker(store: Store, worker: int, start: multiprocessing.synchronize.Event, out: Any) -> None:
    try:
        start.wait(JOIN_TIMEOUT)
        won = [key for key in _key_order(worker, CLAIMS_PER_PROCESS) if store.claim(key, 300)]
        out.put((worker, won, None))
    except BaseException as exc:  # report it: a child's traceback is otherwise lost
        out.put((worker, [], repr(exc)))


def _run_processes(target: Callable[..., None], args_of: Callable[[int], tuple[Any, ...]]) -> list[Any]:
    start = _fork.Event()
    out = _fork.Queue()
    procs = [_fork.Process(target=target, args=(*args_of(w), start, out)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=JOIN_TIMEOUT) for _ in procs]
    for p in procs:
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    errors = [r[2] for r in results if r[2]]
    assert not errors, errors
    return results


def test_each_key_claimed_exactly_once_across_processes(store: Store) -> None:
    store.ping()  # the parent has a live connection before the fork
    results = _run_processes(_claim_worker, lambda w: (store, w))
    winners = Counter(key for _, won, _ in results for key in won)
    assert winners == Counter(f"key-{k}" for k in range(KEYS))
    # and the claims the children took are visible to the parent
    assert store.claim("key-0", 300) is False


def test_each_key_claimed_exactly_once_across_threads(store: Store) -> None:
    barrier = threading.Barrier(PROCESSES)

    def work(worker: int) -> list[str]:
        barrier.wait(JOIN_TIMEOUT)
        return [key for key in _key_order(worker, 500) if store.claim(key, 300)]

    with ThreadPoolExecutor(PROCESSES) as pool:
        won = [key for keys in pool.map(work, range(PROCESSES)) for key in keys]
    assert Counter(won) == Counter(f"key-{k}" for k in range(KEYS))


def test_mark_seen_true_once_across_threads(store: Store) -> None:
    barrier = threading.Barrier(4)

    def work(worker: int) -> list[str]:
        barrier.wait(JOIN_TIMEOUT)
        return [key for key in _key_order(worker, 200) if store.mark_seen(key, 300)]

    with ThreadPoolExecutor(4) as pool:
        won = [key for keys in pool.map(work, range(4)) for key in keys]
    assert Counter(won) == Counter(f"key-{k}" for k in range(KEYS))


def _first_open_worker(url: str, worker: int, start: multiprocessing.synchronize.Event, out: Any) -> None:
    try:
        start.wait(JOIN_TIMEOUT)
        store = open_store(url)
        store.put_admission(AdmissionRecord(uid=f"u{worker}", namespace="ns", name=f"p{worker}"))
        store.close()
        out.put((worker, [], None))
    except BaseException as exc:
        out.put((worker, [], repr(exc)))


def test_sqlite_concurrent_first_opens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh/pulltag.db"
    _run_processes(_first_open_worker, lambda w: (url, w))
    store = open_store(url)
    assert {r.uid for r in store.list_admissions()} == {f"u{w}" for w in range(PROCESSES)}
    store.close()


def _fork_reuse_worker(store: Store, worker: int, start: multiprocessing.synchronize.Event, out: Any) -> None:
    try:
        start.wait(JOIN_TIMEOUT)
        # the inherited store must notice the new pid and open its own connections
        store.put_admission(AdmissionRecord(uid=f"child-{worker}", namespace="ns", name=f"c{worker}"))
        threads = [threading.Thread(target=store.claim, args=(f"t{worker}-{i}", 60)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.put((worker, [], None))
    except BaseException as exc:
        out.put((worker, [], repr(exc)))


@pytest.mark.parametrize("threads_before_fork", [1, 4])
def test_sqlite_store_used_before_fork_works_in_children(tmp_path: Path, threads_before_fork: int) -> None:
    store = open_store(f"sqlite:///{tmp_path}/pulltag.db")
    # give the parent connections on several threads, as a threaded app would have
    with ThreadPoolExecutor(threads_before_fork) as pool:
        list(pool.map(lambda i: store.claim(f"parent-{i}", 60), range(threads_before_fork)))
    _run_processes(_fork_reuse_worker, lambda w: (store, w))
    assert len(store.list_admissions()) == PROCESSES
    assert store.claim("t0-0", 60) is False
    store.close()
