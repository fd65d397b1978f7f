"""Run pytest and fail when it collected or ran no test.

pytest exits 5 when nothing was collected; a run that deselects or skips everything exits 0. Both
would let a broken test tree pass, so this wrapper turns them into failures.
"""

from __future__ import annotations

import sys

import pytest


class _Counter:
    def __init__(self) -> None:
        self.ran = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and (report.passed or report.failed):
            self.ran += 1


def main(argv: list[str]) -> int:
    counter = _Counter()
    code = int(pytest.main(argv, plugins=[counter]))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED or (code == 0 and counter.ran == 0):
        print("run_pytest: no test ran: failing on purpose", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
