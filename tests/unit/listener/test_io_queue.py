"""Unit tests for the listener's I/O helpers: backoff, the coalescing work queue, the rate limiter."""

from __future__ import annotations

import random
import threading
import time

import pytest

from listener.workqueue import Backoff, TokenBucket, WorkQueue, backoff_delay


def _union(a: set[str], b: set[str]) -> set[str]:
    return a | b


# --- backoff -----------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_jitter_and_caps() -> None:
    backoff = Backoff(initial=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(("failures", "ceiling"), [(0, 1), (1, 2), (3, 8), (6, 60), (40, 60), (5000, 60)])
def test_backoff_delay_for_a_carried_failure_count(failures: int, ceiling: float) -> None:
    for _ in range(20):
        assert ceiling / 2 <= backoff_delay(failures, initial=1.0, cap=60.0) <= ceiling


def test_backoff_reset_starts_over_and_retry_after_wins() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, rng=random.Random(2))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.5
    assert backoff.next_delay(at_least=7.0) == 7.0


def test_backoff_jitter_spreads_replicas() -> None:
    delays = {round(Backoff(initial=4.0, rng=random.Random(seed)).next_delay(), 6) for seed in range(20)}
    assert len(delays) > 10


# --- work queue ----------------------------------------------------------------------------------------


def test_equal_keys_coalesce_while_waiting() -> None:
    q: WorkQueue[set[str]] = WorkQueue(_union)
    q.add("k", {"a"})
    q.add("k", {"b"})
    q.add("other", {"c"})
    assert len(q) == 2
    assert q.get(timeout=1) == ("k", {"a", "b"})
    assert q.get(timeout=1) == ("other", {"c"})


def test_key_in_progress_is_not_handed_out_twice_and_comes_back_after_done() -> None:
    q: WorkQueue[set[str]] = WorkQueue(_union)
    q.add("k", {"a"})
    assert q.get(timeout=1) == ("k", {"a"})
    q.add("k", {"b"})
    assert q.get(timeout=0.05) is None  # still in progress: not handed to a second worker
    q.done("k")
    assert q.get(timeout=1) == ("k", {"b"})
    q.done("k")
    assert q.idle()


def test_add_after_delays_and_orders_by_due_time() -> None:
    q: WorkQueue[set[str]] = WorkQueue(_union)
    started = time.monotonic()
    q.add_after("late", {"x"}, 0.3)
    q.add_after("early", {"y"}, 0.1)
    assert q.get(timeout=2) == ("early", {"y"})
    assert q.get(timeout=2) == ("late", {"x"})
    assert time.monotonic() - started >= 0.3


def test_full_queue_blocks_add_until_a_get() -> None:
    q: WorkQueue[set[str]] = WorkQueue(_union, maxsize=1)
    q.add("a", {"1"})
    added = threading.Event()

    def producer() -> None:
        q.add("b", {"2"})
        added.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    assert not added.wait(0.2)  # backpressure: blocked, not dropped
    assert q.get(timeout=1) == ("a", {"1"})
    assert added.wait(2)
    assert q.get(timeout=1) == ("b", {"2"})


def test_full_queue_still_merges_an_existing_key() -> None:
    q: WorkQueue[set[str]] = WorkQueue(_union, maxsize=1)
    q.add("a", {"1"})
    assert q.add("a", {"2"})  # no block: the key is already waiting
    assert q.get(timeout=1) == ("a", {"1", "2"})


def test_shutdown_wakes_getters_and_refuses_adds() -> None:
    q: WorkQueue[set[str]] = WorkQueue(_union)
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(q.get()), daemon=True)
    thread.start()
    q.shutdown()
    thread.join(2)
    assert got == [None]
    assert q.add("k", {"a"}) is False


# --- rate limiter --------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.1)
    clock.now += 0.11
    assert bucket.try_acquire() == 0.0
    clock.now += 10
    assert sum(1 for _ in range(5) if bucket.try_acquire() == 0.0) == 3  # never more than the burst


def test_token_bucket_acquire_paces_real_time() -> None:
    bucket = TokenBucket(rate=50.0, burst=1)
    started = time.monotonic()
    for _ in range(6):
        assert bucket.acquire()
    assert time.monotonic() - started >= 5 / 50 * 0.9


def test_token_bucket_acquire_gives_up_on_stop() -> None:
    bucket = TokenBucket(rate=0.01, burst=1)
    assert bucket.acquire()
    stop = threading.Event()
    stop.set()
    assert bucket.acquire(stop) is False
