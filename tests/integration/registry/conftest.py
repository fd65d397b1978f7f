"""Registry fixtures for this directory.

The project conftest registers `tests.harness.fixtures_registry` via `pytest_plugins`; until it does,
the fixtures are imported here (a `pytest_plugins` list in a nested conftest would break `pytest tests`).
"""

import tests.conftest as _root

if "tests.harness.fixtures_registry" not in getattr(_root, "pytest_plugins", []):
    from tests.harness.fixtures_registry import *  # noqa: F403
