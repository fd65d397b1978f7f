"""Project-wide pytest configuration: fixtures live in tests/harness/ and are registered here."""

import os

from hypothesis import settings

pytest_plugins = [
    "tests.harness.fixtures_procs",
    "tests.harness.fixtures_registry",
    "tests.harness.fixtures_kube",
]

# `make test` (and so CI) draws the same examples for the same commit: a red run is the code's, never the
# dice's. `make explore` draws fresh ones (PULLTAG_HYPOTHESIS=explore) to find what the fixed draw misses;
# each failure it finds becomes an @example, so the fixed draw keeps it from then on.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("PULLTAG_HYPOTHESIS", "ci"))
