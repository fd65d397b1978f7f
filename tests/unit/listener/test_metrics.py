"""The listener's gauges read at scrape time: store reachability and the watch's last activity."""

from __future__ import annotations

import threading
import time

import pytest

from listener.metrics import ListenerMetrics


def store_up(metrics: ListenerMetrics) -> float:
    return metrics.value("pulltag_store_up")


def test_store_up_follows_the_ping() -> None:
    metrics = ListenerMetrics()
    answers: list[Exception | None] = [None, ConnectionError("redis down"), None]

    def ping() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    metrics.track_store(ping)
    assert [store_up(metrics), store_up(metrics), store_up(metrics)] == [1.0, 0.0, 1.0]


def test_a_ping_that_hangs_reads_as_down() -> None:
    metrics = ListenerMetrics()
    release = threading.Event()
    metrics.track_store(lambda: release.wait(5), timeout=0.05)
    try:
        assert store_up(metrics) == 0.0
    finally:
        release.set()


def test_pings_run_on_one_thread_whichever_thread_scrapes() -> None:
    # The SQLite store keeps a connection per thread: pings from each scrape's thread would pile them up.
    metrics = ListenerMetrics()
    seen: set[int] = set()
    metrics.track_store(lambda: seen.add(threading.get_ident()))
    scrapers = [threading.Thread(target=metrics.render) for _ in range(5)]
    for t in scrapers:
        t.start()
        t.join()
    assert len(seen) == 1 and threading.get_ident() not in seen


def test_watch_activity_is_shown_as_wall_clock_time() -> None:
    metrics = ListenerMetrics()
    last = time.monotonic() - 42.0
    metrics.track_watch(lambda: last)
    shown = metrics.value("pulltag_watch_last_activity_timestamp_seconds")
    assert shown == pytest.approx(time.time() - 42.0, abs=1.0)
