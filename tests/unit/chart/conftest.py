"""The rendered kustomizations and chart variants of tests/unit/manifests, shared."""

from tests.unit.manifests.conftest import manifests_copy, manifests_without_generated, rendered_all

__all__ = ["manifests_copy", "manifests_without_generated", "rendered_all"]
