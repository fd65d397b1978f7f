"""plan() and render_tag(): scopes, filters, time zones, template variables, sanitising."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from listener.confirm import Confirmed
from listener.plan import Skip, TagPlan, fallback_tag, namespace_selected, plan, render_tag, sanitize_tag
from pulltag.config import NamespaceSettings, RegistrySettings, Settings, TaggingSettings
from pulltag.images import is_valid_tag, parse_reference

from .factories import DIGEST, EVENT_UID, PULLED_AT, make_pull


def _settings(
    *,
    hosts: tuple[str, ...] = ("docker.io", "harbor.example.com"),
    namespaces: NamespaceSettings | None = None,
    **tagging: Any,
) -> Settings:
    return Settings(
        tagging=TaggingSettings(**tagging),
        namespaces=namespaces or NamespaceSettings(),
        registries=tuple(RegistrySettings(host=h) for h in hosts),
    )


def _confirmed(image: str = "nginx:1.25", **pull_changes: Any) -> Confirmed:
    ref = parse_reference(image)
    pull = make_pull(image=image, **pull_changes)
    return Confirmed(pull=pull, digest=DIGEST, repository=ref.repository, registry=ref.registry)


def _plan(confirmed: Confirmed | None = None, settings: Settings | None = None, **labels: Any) -> TagPlan:
    result = plan(confirmed or _confirmed(), settings or _settings(), **labels)
    assert isinstance(result, TagPlan), result
    return result


def test_the_default_plan_is_the_original_programs_behaviour() -> None:
    assert _plan() == TagPlan(
        registry="docker.io",
        repository="library/nginx",
        digest=DIGEST,
        tag="deployed_prod_20261126-101502",
        skip_prefix="deployed_",
        dedup_key=f"docker.io/library/nginx@{DIGEST}|",
        namespace="prod",
        pod="web-0",
        container="app",
        node="node-1",
        pulled_at=PULLED_AT.timestamp(),
        image_name="docker.io/library/nginx",
    )


@pytest.mark.parametrize(
    ("scope", "skip_prefix", "scope_key"),
    [("image", "deployed_", ""), ("namespace", "deployed_prod_", "prod"), ("every", None, f"{EVENT_UID}/4")],
)
def test_scopes(scope: str, skip_prefix: str | None, scope_key: str) -> None:
    result = _plan(_confirmed(event_count=4), _settings(scope=scope))
    assert result.skip_prefix == skip_prefix
    assert result.dedup_key == f"docker.io/library/nginx@{DIGEST}|{scope_key}"


def test_scope_keys_separate_what_they_should() -> None:
    def key(scope: str, **changes: Any) -> str:
        return _plan(_confirmed(**changes), _settings(scope=scope)).dedup_key

    assert key("image", namespace="a") == key("image", namespace="b")
    assert key("namespace", namespace="a") != key("namespace", namespace="b")
    assert key("namespace", pod_name="x") == key("namespace", pod_name="y")
    assert key("every", event_count=1) != key("every", event_count=2)
    assert key("every", event_uid="u1") != key("every", event_uid="u2")


def test_custom_prefix_in_skip_prefix() -> None:
    settings = _settings(prefix="seen", scope="namespace", template="{prefix}_{namespace}_{timestamp}")
    result = _plan(settings=settings)
    assert (result.tag, result.skip_prefix) == ("seen_prod_20261126-101502", "seen_prod_")


def test_registry_as_configured_and_dedup_on_the_canonical_host() -> None:
    result = _plan(settings=_settings(hosts=("Index.Docker.IO",)))
    assert result.registry == "Index.Docker.IO"
    assert result.image_name == "Index.Docker.IO/library/nginx"
    assert result.dedup_key.startswith("docker.io/library/nginx@")


def test_private_registry() -> None:
    result = _plan(_confirmed("harbor.example.com/team/app:v2"))
    assert (result.registry, result.repository, result.image_name) == (
        "harbor.example.com",
        "team/app",
        "harbor.example.com/team/app",
    )


def test_unconfigured_registry() -> None:
    assert plan(_confirmed("quay.io/x/y:1"), _settings()) == Skip("unconfigured_registry", "quay.io")
    assert plan(_confirmed(), _settings(hosts=())) == Skip("unconfigured_registry", "docker.io")


@pytest.mark.parametrize(
    ("namespace", "include", "exclude", "selected"),
    [
        ("prod", ("*",), ("kube-system",), True),
        ("kube-system", ("*",), ("kube-system",), False),
        ("team-a", ("team-*",), (), True),
        ("prod", ("team-*",), (), False),
        ("team-secret", ("team-*",), ("*-secret",), False),  # exclude wins
        ("Prod", ("prod",), (), False),  # case-sensitive like Kubernetes names
        ("prod", (), (), False),
        ("a1", ("a?",), (), True),
        ("ab", ("a[0-9]",), (), False),
    ],
)
def test_namespace_filters(
    namespace: str, include: tuple[str, ...], exclude: tuple[str, ...], selected: bool
) -> None:
    settings = NamespaceSettings(include=include, exclude=exclude)
    assert namespace_selected(namespace, settings) is selected
    result = plan(_confirmed(namespace=namespace), _settings(namespaces=settings))
    assert isinstance(result, TagPlan) is selected
    if not selected:
        assert isinstance(result, Skip) and result.reason == "filtered"


@pytest.mark.parametrize(
    ("pod_labels", "namespace_labels", "skipped"),
    [
        ({"pulltag.dev/ignore": "true"}, None, True),
        (None, {"pulltag.dev/ignore": "true"}, True),
        # The one rule (pulltag.contract.opted_out): exactly "true", as the webhooks' selectors match it.
        ({"pulltag.dev/ignore": "True"}, {}, False),
        (None, {"pulltag.dev/ignore": " true"}, False),
        ({"pulltag.dev/ignore": "false"}, {"pulltag.dev/ignore": "no"}, False),
        ({"pulltag.dev/ignore": ""}, None, False),
        ({"app": "web"}, {"team": "a"}, False),
        (None, None, False),
    ],
)
def test_opt_out_label(
    pod_labels: dict[str, str] | None, namespace_labels: dict[str, str] | None, skipped: bool
) -> None:
    result = plan(_confirmed(), _settings(), pod_labels=pod_labels, namespace_labels=namespace_labels)
    assert (result == Skip("filtered", "label pulltag.dev/ignore")) is skipped


def test_registry_check_comes_before_filters() -> None:
    result = plan(_confirmed("quay.io/x/y:1", namespace="kube-system"), _settings())
    assert isinstance(result, Skip) and result.reason == "unconfigured_registry"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "deployed_prod_20261126-101502"),
        ("Europe/Paris", "deployed_prod_20261126-111502"),
        ("America/New_York", "deployed_prod_20261126-051502"),
        ("Asia/Kolkata", "deployed_prod_20261126-154502"),
        ("Pacific/Kiritimati", "deployed_prod_20261127-001502"),  # the date turns over
    ],
)
def test_time_zones(zone: str, expected: str) -> None:
    assert _plan(settings=_settings(timezone=zone)).tag == expected


def test_time_zone_follows_daylight_saving() -> None:
    summer = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    winter = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    settings = _settings(timezone="Europe/Berlin", timestamp_format="%H%M")
    assert _plan(_confirmed(pulled_at=summer), settings).tag == "deployed_prod_1200"
    assert _plan(_confirmed(pulled_at=winter), settings).tag == "deployed_prod_1100"


def test_the_pull_time_counts_not_its_offset() -> None:
    same_instant = PULLED_AT.astimezone(timezone(timedelta(hours=-7)))
    assert _plan(_confirmed(pulled_at=same_instant)).tag == _plan().tag
    assert _plan(_confirmed(pulled_at=same_instant)).pulled_at == PULLED_AT.timestamp()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{prefix}_{namespace}_{timestamp}", "deployed_prod_20261126-101502"),
        ("{prefix}_{cluster}_{namespace}_{timestamp}", "deployed_eu-1_prod_20261126-101502"),
        ("{prefix}-{pod}-{container}", "deployed-web-0-app"),
        ("{prefix}.{node}.{timestamp}", "deployed.node-1.20261126-101502"),
        ("{namespace}", "prod"),
        ("v{timestamp}", "v20261126-101502"),
        ("{prefix}_{{literal}}", "deployed_-literal-"),  # escaped braces are literal text, then sanitised
    ],
)
def test_template_variables(template: str, expected: str) -> None:
    assert _plan(settings=_settings(template=template, cluster="eu-1")).tag == expected


@pytest.mark.parametrize(
    ("changes", "template", "expected"),
    [
        ({"node": "ip-10-0-1-149.ec2.internal"}, "{prefix}_{node}", "deployed_ip-10-0-1-149.ec2.internal"),
        ({"node": "node:1/a b"}, "{prefix}_{node}", "deployed_node-1-a-b"),
        ({"node": "nœud"}, "{prefix}_{node}", "deployed_n-ud"),
        ({"node": ""}, "{prefix}_{node}", "deployed_"),
        ({"pod_name": "x" * 300}, "{prefix}_{pod}", "deployed_" + "x" * 119),
        ({"container": "a💥b"}, "{prefix}_{container}", "deployed_a-b"),
    ],
)
def test_sanitising(changes: dict[str, Any], template: str, expected: str) -> None:
    result = _plan(_confirmed(**changes), _settings(template=template))
    assert result.tag == expected
    assert len(result.tag) <= 128


@pytest.mark.parametrize(
    ("changes", "template"),
    [
        ({"node": ""}, "{node}"),  # empty
        ({"node": "-leading"}, "{node}_{prefix}"),  # "-" may not start a tag
        ({"node": ".hidden"}, "{node}"),
        ({"node": "ünïcode"}, "{node}"),  # sanitised to "-n-code"
    ],
)
def test_invalid_tag(changes: dict[str, Any], template: str) -> None:
    result = plan(_confirmed(**changes), _settings(template=template))
    assert isinstance(result, Skip) and result.reason == "invalid_tag", result


@pytest.mark.parametrize("template", ["{unknown}", "{0}", "{prefix", "{prefix!r}x}"])
def test_a_template_the_loader_refuses_is_an_invalid_tag_not_a_crash(template: str) -> None:
    result = plan(_confirmed(), _settings(template=template))
    assert isinstance(result, Skip) and result.reason == "invalid_tag", result


def test_render_tag_directly() -> None:
    tagging = TaggingSettings(template="{prefix}_{cluster}_{pod}_{container}_{node}_{timestamp}", cluster="c")
    when = datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC)
    tag = render_tag(tagging, namespace="ns", pod="p", container="k", node="n", when=when)
    assert tag == "deployed_c_p_k_n_20261126-101502"


def test_render_tag_reads_a_naive_time_as_utc() -> None:
    tagging = TaggingSettings(timezone="Europe/Paris")
    naive = datetime(2026, 11, 26, 10, 15, 2)
    aware = naive.replace(tzinfo=UTC)
    args: dict[str, Any] = {"namespace": "ns", "pod": "p", "container": "c", "node": "n"}
    assert render_tag(tagging, when=naive, **args) == render_tag(tagging, when=aware, **args)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ok_1.2-3", "ok_1.2-3"), ("a b", "a-b"), ("a/b:c@d", "a-b-c-d"), ("x" * 200, "x" * 128), ("", "")],
)
def test_sanitize_tag(text: str, expected: str) -> None:
    assert sanitize_tag(text) == expected


def test_sanitised_default_tags_are_valid() -> None:
    assert is_valid_tag(_plan().tag)


def test_plan_does_not_depend_on_other_pull_fields() -> None:
    base = _plan()
    other = _plan(_confirmed(already_present=True, pull_seconds=None, event_count=9))
    assert replace(other, dedup_key=base.dedup_key) == base


@pytest.mark.parametrize(
    ("tag", "digest", "expected"),
    [
        (
            "deployed_prod_20261126-101502",
            "sha256:" + "ab" * 32,
            "deployed_prod_20261126-101502_abababababab",
        ),
        ("t", "sha512:" + "0123456789" * 13, "t_012345678901"),
        ("x" * 128, "sha256:" + "cd" * 32, "x" * 115 + "_cdcdcdcdcdcd"),
        ("x" * 120, "sha256:" + "ef" * 32, "x" * 115 + "_efefefefefef"),
    ],
)
def test_fallback_tag_appends_the_digest_and_fits_128(tag: str, digest: str, expected: str) -> None:
    assert fallback_tag(tag, digest) == expected
    assert is_valid_tag(expected) and len(expected) <= 128
