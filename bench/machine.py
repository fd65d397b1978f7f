"""The machine's speed, measured in a second: runs from different days (or beside a CPU hog) are read
side by side through these figures, not through wall-clock times alone.

- `json_loads_per_s`: `json.loads` of a fixed 1 kB watch event (the listener's and the webhook's work);
- `loop_per_s`: iterations of a fixed pure-Python loop (arithmetic, a dict and a list), the interpreter's
  speed on one core.

Both are single-threaded and measured over ~0.5 s each, best of three slices, so a short stall of a
noisy neighbour does not decide the figure.

    .venv/bin/python -P bench/machine.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

EVENT = json.dumps(
    {
        "type": "ADDED",
        "object": {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": "web-7d4b9c-x2x9q.17f3a", "namespace": "shop", "resourceVersion": "123456",
                         "uid": "5f0c2e8a-1111-4c4c-9d9d-000000000001",
                         "creationTimestamp": "2026-11-26T10:00:00Z"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-7d4b9c-x2x9q",
                               "uid": "5f0c2e8a-1111-4c4c-9d9d-000000000001", "apiVersion": "v1",
                               "resourceVersion": "123400", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled",
            "message": 'Successfully pulled image "registry.example.com/shop/web:2.1" in 1.2s '
                       "(1.2s including waiting). Image size: 12345678 bytes.",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2026-11-26T10:00:00Z", "lastTimestamp": "2026-11-26T10:00:00Z",
            "count": 1, "type": "Normal",
        },
    }
)  # fmt: skip


def _loop(n: int) -> int:
    table: dict[int, int] = {}
    items: list[int] = []
    total = 0
    for i in range(n):
        total += (i * 7) % 13
        table[i & 255] = total
        if i & 15 == 0:
            items.append(total)
    return total + len(table) + len(items)


def _rate(work: Callable[[int], object], batch: int, seconds: float) -> float:
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            work(batch)
            count += batch
        best = max(best, count / elapsed)
    return best


def speed(seconds: float = 0.5) -> dict[str, float]:
    """`json_loads_per_s` and `loop_per_s` of this machine now (about 2 × `seconds`)."""

    def loads(n: int) -> None:
        for _ in range(n):
            json.loads(EVENT)

    return {
        "json_loads_per_s": round(_rate(loads, 200, seconds)),
        "loop_per_s": round(_rate(_loop, 20_000, seconds)),
    }


def describe(figures: dict[str, float]) -> str:
    return (
        f"machine speed: json.loads of a 1 kB event {figures['json_loads_per_s']:,.0f}/s, "
        f"pure-Python loop {figures['loop_per_s'] / 1e6:.1f} M iterations/s"
    )


if __name__ == "__main__":
    print(describe(speed()))
