"""Every benchmark runs at a tiny size and `bench/report.py` can read what it prints.

Nothing else in `make test` runs the benchmarks, and two breaks went unseen that way (the rollout waiting
forever once the test world's webhook configurations changed; the report not reading the registry
benchmark's new output). The figures at these sizes mean nothing: only that each benchmark ends, prints its
JSON result, and that the report turns it into rows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
TINY = {
    "store": ["-P", "bench/store.py", "--seconds", "0.05"],
    "registry": ["-m", "bench.registry", "--tags", "2", "--history", "0,5"],
    "webhook": ["-P", "bench/webhook.py", "--requests", "200", "--paced-requests", "60"],
    "listener": ["-P", "bench/listener.py", "--events", "2000", "--small", "200"],
    "rollout": ["-P", "bench/rollout.py", "--pods", "12", "--images", "2", "--timeout", "120"],
    "inventory": ["-P", "bench/inventory.py", "--pods", "300", "--small", "100"],
}


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(TINY))
def test_each_benchmark_runs_and_the_report_reads_it(name: str) -> None:
    report = _report()
    assert {n for n, _, _ in report.BENCHMARKS} == set(TINY), "a benchmark the smoke test does not run"
    result, _ = report.run(name, TINY[name])
    rows = report.ROWS[name](result)
    assert rows
    for bench, figure, value, _anchor, _anchor_value, _ratio in rows:
        assert bench == name and figure
        assert isinstance(value, int | float), (figure, value)
