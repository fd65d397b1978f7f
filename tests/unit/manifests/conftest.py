"""Fixtures: every kustomization of manifests/, and the Helm chart for the same settings, rendered once per
session (kustomize on a temporary copy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.manifests.render import (
    CHART_VARIANTS,
    SCRIPT_CERT_VARIANTS,
    VARIANTS,
    Rendered,
    copy_manifests,
    helm_template,
    kubectl,
    kustomize,
    write_generated,
)


@pytest.fixture(scope="session")
def manifests_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """(copy of manifests/ with base/generated/ filled, the CA's PEM)."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed")
    root = copy_manifests(tmp_path_factory.mktemp("with-certs"))
    ca_pem = write_generated(root / "base" / "generated")
    return root, ca_pem


@pytest.fixture(scope="session")
def manifests_without_generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if kubectl() is None:
        pytest.skip("kubectl is not installed")
    return copy_manifests(tmp_path_factory.mktemp("without-certs"))


@pytest.fixture(scope="session")
def rendered_all(
    manifests_copy: tuple[Path, bytes], manifests_without_generated: Path
) -> dict[str, Rendered]:
    root, ca_pem = manifests_copy
    out: dict[str, Rendered] = {}
    for name, rel in VARIANTS.items():
        if name in SCRIPT_CERT_VARIANTS:
            out[name] = Rendered(name, kustomize(root / rel), ca_pem)
        else:
            # Everything else must render without generated/ at all.
            out[name] = Rendered(name, kustomize(manifests_without_generated / rel))
    for name, (values, _) in CHART_VARIANTS.items():
        out[name] = Rendered(name, helm_template(values))
    return out


@pytest.fixture(params=[*VARIANTS, *CHART_VARIANTS])
def rendered(request: pytest.FixtureRequest, rendered_all: dict[str, Rendered]) -> Rendered:
    """Each kustomize variant and each chart variant in turn."""
    return rendered_all[str(request.param)]
