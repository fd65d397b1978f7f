"""The `listener:` configuration reaches the informer and the leader election."""

from __future__ import annotations

from listener.main import election_timing, informer_options, with_flags
from pulltag.config import settings_from_dict


def test_watch_settings_reach_the_informer() -> None:
    settings = settings_from_dict(
        {"listener": {"watch_read_timeout_seconds": 3, "watch_backoff_max_seconds": 2}}, env={}
    )
    options = informer_options(settings)
    assert options.read_timeout == 3.0
    assert options.backoff_cap == 2.0
    assert options.backoff_initial == settings.listener.watch_backoff_initial_seconds
    assert options.healthy_stream_seconds == settings.listener.watch_healthy_stream_seconds


def test_dry_run_from_the_flag_or_the_configuration() -> None:
    off = settings_from_dict({}, env={})
    on = settings_from_dict({"listener": {"dry_run": True}}, env={})
    assert with_flags(off, dry_run=False).listener.dry_run is False
    assert with_flags(off, dry_run=True).listener.dry_run is True
    assert with_flags(on, dry_run=False).listener.dry_run is True
    assert with_flags(off, dry_run=True).listener.workers == off.listener.workers


def test_lease_timing_keeps_client_go_proportions() -> None:
    default = election_timing(settings_from_dict({}, env={}))
    assert (default.lease_seconds, default.renew_deadline, default.retry_period) == (15.0, 10.0, 2.0)
    short = election_timing(settings_from_dict({"listener": {"lease_duration_seconds": 3}}, env={}))
    assert short.lease_seconds == 3.0
    assert short.retry_period < short.renew_deadline < short.lease_seconds
