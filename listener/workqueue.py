"""The listener's work machinery: a coalescing work queue, a token bucket, a worker pool, and the one
backoff rule every retry in the listener uses."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_RANDOM = random.Random()


def backoff_delay(
    attempt: int, initial: float, cap: float, *, factor: float = 2.0, rng: random.Random | None = None
) -> float:
    """The delay before retry number `attempt` (0-based): exponential from `initial`, at most `cap`, with
    "equal jitter" (half fixed, half random), so a delay is never near zero (no hot loop) and replicas
    that failed together do not retry together."""
    # min() before the power would overflow: 2.0**1100 raises, and attempts are carried in queued work.
    ceiling = cap if attempt >= 64 else min(cap, initial * factor**attempt)
    return ceiling / 2 + (rng or _RANDOM).uniform(0, ceiling / 2)


class Backoff:
    """A failure count for a loop that retries in place (the informer's watch); the delay is
    `backoff_delay`'s."""

    def __init__(
        self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.failures = 0
        self._rng = rng

    def next_delay(self, at_least: float = 0.0) -> float:
        """The delay before the next attempt; counts one more failure. `at_least` honours Retry-After."""
        delay = backoff_delay(self.failures, self.initial, self.cap, factor=self.factor, rng=self._rng)
        self.failures += 1
        return max(delay, at_least)

    def reset(self) -> None:
        self.failures = 0


class WorkQueue(Generic[T]):
    """A work queue with client-go's semantics: a key is queued at most once (adding it again merges
    the values), a key being processed is never handed to a second worker (re-adds wait until `done`),
    delayed adds, and a bound on waiting keys (a full queue blocks `add`: backpressure, not loss)."""

    def __init__(self, merge: Callable[[T, T], T], maxsize: int = 0) -> None:
        self._merge = merge
        self._maxsize = maxsize
        self._ready: OrderedDict[str, T] = OrderedDict()
        self._processing: set[str] = set()
        self._dirty: dict[str, T] = {}
        self._delayed: list[tuple[float, int, str, T]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._shutdown = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed) + len(self._dirty)

    def idle(self) -> bool:
        """Nothing waiting, delayed or in progress."""
        with self._cond:
            return not (self._ready or self._delayed or self._dirty or self._processing)

    def add(self, key: str, value: T, *, block: bool = True) -> bool:
        """Queue `value` under `key` (merging with a queued one); False once shut down."""
        with self._cond:
            while True:
                if self._shutdown:
                    return False
                if self._merge_existing(key, value):
                    return True
                if not block or not self._maxsize or len(self._ready) < self._maxsize:
                    self._ready[key] = value
                    self._cond.notify_all()
                    return True
                self._cond.wait(0.5)

    def add_after(self, key: str, value: T, delay: float) -> None:
        """Queue after `delay` seconds; never blocks (retries must not deadlock a full queue)."""
        with self._cond:
            if self._shutdown:
                return
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key, value))
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> tuple[str, T] | None:
        """The next (key, value), marked in progress; None on shutdown or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                self._promote_due()
                if self._ready:
                    key, value = self._ready.popitem(last=False)
                    self._processing.add(key)
                    self._cond.notify_all()
                    return key, value
                wait = self._wait_time(deadline)
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready[key] = self._dirty.pop(key)
            self._cond.notify_all()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def _merge_existing(self, key: str, value: T) -> bool:
        if key in self._ready:
            self._ready[key] = self._merge(self._ready[key], value)
            return True
        if key in self._processing:
            old = self._dirty.get(key)
            self._dirty[key] = value if old is None else self._merge(old, value)
            return True
        return False

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key, value = heapq.heappop(self._delayed)
            if not self._merge_existing(key, value):
                self._ready[key] = value

    def _wait_time(self, deadline: float | None) -> float | None:
        now = time.monotonic()
        waits = []
        if self._delayed:
            waits.append(self._delayed[0][0] - now)
        if deadline is not None:
            waits.append(deadline - now)
        # Wake up at least every second: cheap, and robust against a missed notification.
        return min([*waits, 1.0]) if waits else 1.0


class TokenBucket:
    """`rate` tokens per second, up to `burst` saved; `acquire` waits for one (or gives up on stop)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a token if there is one (returns 0), else the seconds until there will be one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)


class WorkerPool(Generic[T]):
    """`size` threads taking items from a WorkQueue; a handler's exception is logged, never fatal."""

    def __init__(self, name: str, work: WorkQueue[T], handler: Callable[[str, T], None], size: int) -> None:
        self.name = name
        self.work = work
        self.handler = handler
        self.threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            key, value = item
            try:
                self.handler(key, value)
            except Exception:
                log.exception("%s: handling %s failed", self.name, key)
            finally:
                self.work.done(key)

    def join(self, deadline: float) -> bool:
        """Wait until `deadline` (monotonic) for in-flight items; True if all threads ended."""
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)
