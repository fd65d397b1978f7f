"""The fake API server's per-phase object count, which bench/rollout.py waits on instead of listing pods."""

from __future__ import annotations

import threading

from tests.harness.kubeapi.store import Store


def _pod(name: str, phase: str | None) -> dict[str, object]:
    pod: dict[str, object] = {"metadata": {"name": name, "namespace": "shop"}}
    if phase is not None:
        pod["status"] = {"phase": phase}
    return pod


def test_the_count_follows_every_write_and_delete() -> None:
    store = Store(compaction_window=100)
    a, b = ("pods", "shop", "a"), ("pods", "shop", "b")
    store.write(a, _pod("a", None))
    store.write(b, _pod("b", "Pending"))
    assert store.count_phase("pods", "shop", "Pending") == 1
    store.write(a, _pod("a", "Running"))
    store.write(b, _pod("b", "Running"))
    assert store.count_phase("pods", "shop", "Pending") == 0
    assert store.count_phase("pods", "shop", "Running") == 2
    assert store.count_phase("pods", "other", "Running") == 0
    assert store.count_phase("events", "shop", "Running") == 0
    store.write(b, _pod("b", "Succeeded"))
    store.delete(a)
    assert store.count_phase("pods", "shop", "Running") == 0
    assert store.count_phase("pods", "shop", "Succeeded") == 1


def test_a_waiter_wakes_on_the_write_that_reaches_the_count() -> None:
    store = Store(compaction_window=100)
    store.write(("pods", "shop", "a"), _pod("a", "Running"))
    assert store.wait_phase("pods", "shop", "Running", 1, timeout=0)
    assert not store.wait_phase("pods", "shop", "Running", 2, timeout=0.05)
    writer = threading.Thread(target=store.write, args=(("pods", "shop", "b"), _pod("b", "Running")))
    writer.start()
    assert store.wait_phase("pods", "shop", "Running", 2, timeout=30)
    writer.join()
