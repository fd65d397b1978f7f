"""Project-wide pytest configuration: fixtures live in tests/harness/ and are registered here."""

pytest_plugins = [
    "tests.harness.fixtures_procs",
    "tests.harness.fixtures_registry",
    "tests.harness.fixtures_kube",
]
