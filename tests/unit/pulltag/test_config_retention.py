"""The `retention` section: documented defaults, 0 allowed where it means something, one line per bad key."""

from __future__ import annotations

import pytest

from pulltag.config import ConfigError, RetentionSettings, settings_from_dict


def test_defaults_are_the_documented_ones() -> None:
    retention = settings_from_dict(None, env={}).retention
    assert retention == RetentionSettings(
        enabled=False, keep_last=5, grace_hours=168.0, min_age_hours=24.0, interval_seconds=3600.0
    )


def test_every_key_is_read() -> None:
    raw = {"enabled": True, "keep_last": 2, "grace_hours": 1.5, "min_age_hours": 0, "interval_seconds": 60}
    retention = settings_from_dict({"retention": raw}, env={}).retention
    assert retention == RetentionSettings(True, 2, 1.5, 0.0, 60.0)


def test_zero_is_allowed_for_counts_and_hours() -> None:
    raw = {"keep_last": 0, "grace_hours": 0, "min_age_hours": 0}
    retention = settings_from_dict({"retention": raw}, env={}).retention
    assert (retention.keep_last, retention.grace_hours, retention.min_age_hours) == (0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"keep_last": -1}, "config: retention.keep_last: must be 0 or more, got -1"),
        ({"keep_last": 1.5}, "config: retention.keep_last: must be an integer, got float"),
        ({"keep_last": True}, "config: retention.keep_last: must be an integer, got bool"),
        ({"grace_hours": -0.5}, "config: retention.grace_hours: must be 0 or more, got -0.5"),
        ({"min_age_hours": "1d"}, "config: retention.min_age_hours: must be a number, got str"),
        ({"interval_seconds": 0}, "config: retention.interval_seconds: must be greater than 0, got 0"),
        ({"enabled": "yes"}, "config: retention.enabled: must be true or false, got str"),
        ({"keep": 3}, "config: retention.keep: unknown key"),
    ],
)
def test_bad_values_name_the_key_on_one_line(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict({"retention": raw}, env={})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_section_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^config: retention: must be a mapping, got list$"):
        settings_from_dict({"retention": [1]}, env={})


def test_the_readme_documents_the_retention_defaults() -> None:
    import dataclasses
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Configuration.*?```yaml\n(.*?)```", readme, re.S)
    assert block is not None
    documented = yaml.safe_load(block.group(1))["retention"]
    assert documented == dataclasses.asdict(RetentionSettings())
