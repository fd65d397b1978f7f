"""parse_pull over the kubelet's Pulled events, every message format across versions, and malformed input."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from listener.pulls import NotAPull, Pull, parse_go_duration, parse_pull, parse_timestamp, seen_key

from .factories import EVENT_UID, POD_UID, core_event, events_v1_event, with_object


def _pull(event: Any) -> Pull:
    result = parse_pull(event)
    assert isinstance(result, Pull), result
    return result


def _not(event: Any) -> str:
    result = parse_pull(event)
    assert isinstance(result, NotAPull), result
    return result.reason


# (kubelet version, message, image, already_present, pull_seconds, waiting_seconds, image_size)
MESSAGES = [
    ("1.18", 'Successfully pulled image "nginx:1.25"', "nginx:1.25", False, None, None, None),
    ("1.20", 'Successfully pulled image "nginx:1.25" in 3.2s', "nginx:1.25", False, 3.2, None, None),
    ("1.22", 'Successfully pulled image "nginx" in 1m2.5s', "nginx", False, 62.5, None, None),
    ("1.22", 'Successfully pulled image "nginx" in 49.657983991s', "nginx", False, 49.657983991, None, None),
    (
        "1.25",
        'Successfully pulled image "nginx:1.25" in 3.2s (3.2s including waiting)',
        "nginx:1.25",
        False,
        3.2,
        3.2,
        None,
    ),
    (
        "1.27",
        'Successfully pulled image "registry.example.com:5000/team/app:v2" in 350ms (1.5s including waiting)',
        "registry.example.com:5000/team/app:v2",
        False,
        0.35,
        1.5,
        None,
    ),
    (
        "1.30",
        'Successfully pulled image "nginx:1.25" in 1.234s (1.234s including waiting). '
        "Image size: 70567890 bytes.",
        "nginx:1.25",
        False,
        1.234,
        1.234,
        70567890,
    ),
    (
        "1.30",
        'Successfully pulled image "ghcr.io/org/app@sha256:'
        + "ab" * 32
        + '" in 1h0m0s (1h0m1s including waiting)'
        ". Image size: 0 bytes.",
        "ghcr.io/org/app@sha256:" + "ab" * 32,
        False,
        3600.0,
        3601.0,
        0,
    ),
    ("1.18", 'Container image "nginx:1.25" already present on machine', "nginx:1.25", True, None, None, None),
    ("1.30", 'Container image "busybox" already present on machine', "busybox", True, None, None, None),
    (
        "1.35",
        'Container image "nginx:1.25" already present on machine and can be accessed by the pod',
        "nginx:1.25",
        True,
        None,
        None,
        None,
    ),
    (
        "combined",
        '(combined from similar events): Successfully pulled image "quay.io/x/music:1.0.0" in 715ms '
        "(715ms including waiting). Image size: 94836428 bytes.",
        "quay.io/x/music:1.0.0",
        False,
        0.715,
        0.715,
        94836428,
    ),
    (
        "combined",
        '(combined from similar events): Container image "nginx:1.25" already present on machine',
        "nginx:1.25",
        True,
        None,
        None,
        None,
    ),
    (
        "combined-1.35",
        '(combined from similar events): Container image "nginx:1.25" already present on machine and can be '
        "accessed by the pod",
        "nginx:1.25",
        True,
        None,
        None,
        None,
    ),
    # Go's %q escapes a quote and a backslash; the image text comes back unescaped.
    (
        "quoted",
        r'Container image "we\"ird\\name" already present on machine',
        'we"ird\\name',
        True,
        None,
        None,
        None,
    ),
    ("quoted", r'Successfully pulled image "caf\u00e9:1" in 2µs', "café:1", False, 2e-6, None, None),
    ("quoted", r'Successfully pulled image "bad\xffbyte" in 3us', "bad\ufffdbyte", False, 3e-6, None, None),
    ("quoted", r'Successfully pulled image "tab\there" in 0s', "tab\there", False, 0.0, None, None),
    ("unicode", 'Successfully pulled image "nginx:ünï" in 1.5s', "nginx:ünï", False, 1.5, None, None),
]


@pytest.mark.parametrize(("version", "message", "image", "present", "pull_s", "wait_s", "size"), MESSAGES)
def test_every_kubelet_message_is_recognised(
    version: str,
    message: str,
    image: str,
    present: bool,
    pull_s: float | None,
    wait_s: float | None,
    size: int | None,
) -> None:
    pull = _pull(core_event(message))
    assert pull.image == image
    assert pull.already_present is present
    assert pull.pull_seconds == (pytest.approx(pull_s) if pull_s is not None else None)
    assert pull.waiting_seconds == (pytest.approx(wait_s) if wait_s is not None else None)
    assert pull.image_size == size


def test_a_full_core_event() -> None:
    pull = _pull(core_event('Successfully pulled image "nginx:1.25" in 1.234s', count=3))
    assert pull == Pull(
        event_uid=EVENT_UID,
        event_count=3,
        namespace="prod",
        pod_name="web-0",
        pod_uid=POD_UID,
        container_kind="containers",
        container="app",
        image="nginx:1.25",
        already_present=False,
        pulled_at=datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC),
        node="node-1",
        pull_seconds=1.234,
    )
    assert seen_key(pull) == f"{EVENT_UID}/3"


def test_an_events_v1_event() -> None:
    pull = _pull(events_v1_event())
    assert (pull.container_kind, pull.container) == ("initContainers", "init")
    assert pull.node == "node-2"  # reportingInstance: events.k8s.io has no source.host
    assert pull.pulled_at == datetime(2026, 11, 26, 10, 15, 2, 123456, tzinfo=UTC)
    assert pull.event_count == 1


def test_events_v1_series_and_deprecated_fields() -> None:
    event = events_v1_event(
        series={"count": 7, "lastObservedTime": "2026-11-26T11:00:00.5Z"},
        deprecatedCount=2,
        deprecatedSource={"component": "kubelet", "host": "node-9"},
    )
    pull = _pull(event)
    assert pull.event_count == 7  # the largest count, so repeated occurrences always get a new seen key
    assert pull.pulled_at == datetime(2026, 11, 26, 11, 0, 0, 500000, tzinfo=UTC)
    assert pull.node == "node-9"


@pytest.mark.parametrize(
    ("field_path", "kind", "name"),
    [
        ("spec.containers{app}", "containers", "app"),
        ("spec.initContainers{init-db}", "initContainers", "init-db"),
        ("spec.ephemeralContainers{debugger-xk2p}", "ephemeralContainers", "debugger-xk2p"),
    ],
)
def test_field_paths(field_path: str, kind: str, name: str) -> None:
    pull = _pull(with_object(core_event(), fieldPath=field_path))
    assert (pull.container_kind, pull.container) == (kind, name)


@pytest.mark.parametrize(
    "field_path",
    [
        "",
        "spec.containers",
        "spec.containers{}",
        "spec.volumes{data}",
        "spec.containers[0]",
        "spec.containers{a}x",
        7,
    ],
)
def test_bad_field_paths(field_path: object) -> None:
    assert _not(with_object(core_event(), fieldPath=field_path)) == "bad_field_path"


def test_missing_field_path() -> None:
    assert _not(with_object(core_event(), fieldPath=None)) == "bad_field_path"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"reportingComponent": "default-scheduler"}, "not_kubelet"),
        ({"reportingComponent": "kubelet-impostor"}, "not_kubelet"),
        ({"reportingComponent": "", "source": {"component": "my-controller"}}, "not_kubelet"),
        ({"reportingComponent": None, "source": None}, "not_kubelet"),
        ({"reportingComponent": 1}, "not_kubelet"),
        ({"reason": "Pulling"}, "wrong_reason"),
        ({"reason": "pulled"}, "wrong_reason"),
        ({"reason": None}, "wrong_reason"),
        ({"message": 'Pulling image "nginx:1.25"'}, "unparsable_message"),
        ({"message": 'Failed to pull image "nginx:1.25": not found'}, "unparsable_message"),
        ({"message": 'Successfully pulled image "nginx:1.25" in banana'}, "unparsable_message"),
        ({"message": 'Successfully pulled image "" in 1s'}, "unparsable_message"),
        ({"message": 'Successfully pulled image "nginx:1.25" in 1s trailing'}, "unparsable_message"),
        ({"message": 'Successfully pulled image "nginx:1.25 in 1s'}, "unparsable_message"),
        ({"message": 'Container image "nginx" already present on machine!'}, "unparsable_message"),
        ({"message": "Container image nginx already present on machine"}, "unparsable_message"),
        (
            {"message": 'x (combined from similar events): Container image "a" already present on machine'},
            "unparsable_message",
        ),
        ({"message": ""}, "unparsable_message"),
        ({"message": None}, "unparsable_message"),
        ({"message": ['Successfully pulled image "nginx"']}, "unparsable_message"),
        ({"message": 'Successfully pulled image "' + "a" * 5000 + '"'}, "unparsable_message"),
        ({"involvedObject": None}, "not_a_pod"),
        ({"involvedObject": "pod/web-0"}, "not_a_pod"),
        ({"metadata": {"name": "x"}}, "no_event_uid"),
        ({"metadata": None}, "no_event_uid"),
    ],
)
def test_malformed_or_foreign_events(changes: dict[str, Any], reason: str) -> None:
    assert _not(core_event(**changes)) == reason


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "Node"},
        {"kind": "ReplicaSet"},
        {"apiVersion": "v2"},
        {"apiVersion": None},
        {"namespace": None},
        {"namespace": ""},
        {"name": None},
        {"uid": None},
        {"uid": 12},
    ],
)
def test_involved_object_must_be_a_v1_pod_with_identity(changes: dict[str, Any]) -> None:
    assert _not(with_object(core_event(), **changes)) == "not_a_pod"


def test_old_kubelet_without_reporting_component() -> None:
    event = core_event(reportingComponent="", reportingInstance="")
    pull = _pull(event)
    assert pull.node == "node-1"
    event = core_event(reportingComponent=None, reportingInstance=None)
    assert _pull(event).node == "node-1"


def test_node_falls_back_to_reporting_instance_and_then_empty() -> None:
    assert _pull(core_event(source={"component": "kubelet"})).node == "node-1"
    assert _pull(core_event(source={"component": "kubelet"}, reportingInstance=None)).node == ""


@pytest.mark.parametrize("not_a_mapping", [None, [], "event", 3, 1.5, True, ["reason", "Pulled"]])
def test_not_a_mapping(not_a_mapping: Any) -> None:
    assert _not(not_a_mapping) == "not_an_event"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC)),
        (
            {"lastTimestamp": None, "eventTime": "2026-11-26T10:15:03.000001Z"},
            datetime(2026, 11, 26, 10, 15, 3, 1, tzinfo=UTC),
        ),
        ({"lastTimestamp": None}, datetime(2026, 11, 26, 10, 14, tzinfo=UTC)),  # firstTimestamp
        ({"lastTimestamp": "garbage"}, datetime(2026, 11, 26, 10, 14, tzinfo=UTC)),
        (
            {"lastTimestamp": None, "firstTimestamp": None},
            datetime(2026, 11, 26, 10, 15, tzinfo=UTC),
        ),  # creation
        ({"lastTimestamp": "2026-11-26T12:15:02+02:00"}, datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC)),
    ],
)
def test_pulled_at_precedence(changes: dict[str, Any], expected: datetime) -> None:
    pulled_at = _pull(core_event(**changes)).pulled_at
    assert pulled_at == expected
    assert pulled_at.tzinfo is not None


def test_no_timestamp_at_all() -> None:
    event = core_event(lastTimestamp=None, firstTimestamp=None)
    event["metadata"] = {"uid": EVENT_UID}
    assert _not(event) == "no_timestamp"


@pytest.mark.parametrize(
    ("count", "series", "expected"),
    [
        (None, None, 1),
        (4, None, 4),
        (0, None, 1),
        (-3, None, 1),
        (True, None, 1),
        ("5", None, 1),
        (2, {"count": 9}, 9),
        (None, {"count": 3}, 3),
        (None, {"count": "x"}, 1),
        (None, "series", 1),
    ],
)
def test_event_count(count: Any, series: Any, expected: int) -> None:
    assert _pull(core_event(count=count, series=series)).event_count == expected


def test_input_is_not_modified() -> None:
    event = core_event()
    before = copy.deepcopy(event)
    parse_pull(event)
    assert event == before


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("1.5s", 1.5),
        ("350ms", 0.35),
        ("1m2.5s", 62.5),
        ("1h0m0s", 3600.0),
        ("2h45m", 9900.0),
        ("2µs", 2e-6),
        ("2μs", 2e-6),
        ("3us", 3e-6),
        ("100ns", 1e-7),
        ("1.s", 1.0),
        (".5s", 0.5),
        ("-1.5s", -1.5),
        ("+2s", 2.0),
        ("1h1m1s1ms1us1ns", 3661.001001001),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "text", ["", "1", "s", "1x", "1.5", "1 s", "1s ", "--1s", ".s", "1h-1m", "１s", "1S"]
)
def test_bad_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_near_miss_durations_do_not_backtrack_exponentially() -> None:
    message = 'Successfully pulled image "a" in ' + "11s" * 2000 + "x"
    assert _not(core_event(message)) == "unparsable_message"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:15:02Z", datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC)),
        ("2026-11-26T10:15:02.5Z", datetime(2026, 11, 26, 10, 15, 2, 500000, tzinfo=UTC)),
        ("2026-11-26T10:15:02.123456789Z", datetime(2026, 11, 26, 10, 15, 2, 123456, tzinfo=UTC)),
        ("2026-11-26t10:15:02z", datetime(2026, 11, 26, 10, 15, 2, tzinfo=UTC)),
        (
            "2026-11-26T10:15:02-05:30",
            datetime(2026, 11, 26, 10, 15, 2, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_timestamps(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        None,
        0,
        "",
        "2026-11-26",
        "2026-11-26T10:15:02",
        "2026-02-30T10:15:02Z",
        "2026-11-26T25:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-11-26T10:15:02+24:00",
        "2026-11-26T10:15:60Z",
        "２０２６-11-26T10:15:02Z",
        "2026-11-26T10:15:02Z\n",
    ],
)
def test_bad_timestamps(text: object) -> None:
    assert parse_timestamp(text) is None
