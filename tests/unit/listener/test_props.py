"""Properties: parse_pull never raises, and its fast paths change no answer; plan yields a grammar-valid tag
or a Skip; plan is deterministic."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener import pulls
from listener.confirm import Confirmed, admission_from_annotation, confirm
from listener.informer import _decode_line
from listener.plan import Skip, TagPlan, fallback_tag, plan
from listener.pulls import NotAPull, Pull, parse_go_duration, parse_pull, parse_timestamp
from pulltag.config import RegistrySettings, Settings, TaggingSettings
from pulltag.images import is_valid_tag, parse_reference

from .factories import DIGEST, core_event, events_v1_event, make_pod, make_pull, with_object

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
EVENT_KEYS = st.sampled_from(
    [
        "reason",
        "message",
        "note",
        "involvedObject",
        "regarding",
        "reportingComponent",
        "reportingController",
        "reportingInstance",
        "source",
        "deprecatedSource",
        "metadata",
        "count",
        "deprecatedCount",
        "series",
        "lastTimestamp",
        "deprecatedLastTimestamp",
        "firstTimestamp",
        "eventTime",
    ]
)
OBJECT_KEYS = st.sampled_from(["kind", "apiVersion", "namespace", "name", "uid", "fieldPath"])
FRAGMENTS = st.sampled_from(
    [
        "Successfully pulled image ",
        "Container image ",
        " already present on machine",
        " and can be accessed by the pod",
        "(combined from similar events): ",
        '"',
        "\\",
        "\\x",
        "\\u12",
        "\\U0010ffff",
        "\\U7fffffff",
        "\\377",
        " in ",
        "1m2.5s",
        "µs",
        " (",
        " including waiting)",
        ". Image size: ",
        "9" * 25,
        " bytes.",
        "nginx:1.25",
        "\ud800",
        "\x00",
    ]
)
NOISE_MESSAGES = st.lists(FRAGMENTS | st.text(max_size=5), max_size=12).map("".join)
# Messages of the kubelet's shapes around arbitrary image text, so that the Pull-building path runs too.
IMAGE_TEXT = st.lists(
    st.text(st.characters(blacklist_characters='"\\'), min_size=1, max_size=6)
    | st.sampled_from(['\\"', "\\\\", "\\x80", "\\u00e9", "\\t"]),
    min_size=1,
    max_size=5,
).map("".join)
DURATIONS = st.sampled_from(
    ["", " in 1.5s", " in 1m2.5s (1h0m0s including waiting)", " in 2µs (3us including waiting)"]
)
KUBELET_MESSAGES = st.builds(
    lambda combined, present, image, duration, size: (
        combined
        + (
            f'Container image "{image}" already present on machine' + present
            if present is not None
            else f'Successfully pulled image "{image}"{duration}{size}'
        )
    ),
    st.sampled_from(["", "(combined from similar events): "]),
    st.sampled_from([None, "", " and can be accessed by the pod"]),
    IMAGE_TEXT,
    DURATIONS,
    st.sampled_from(["", ". Image size: 123 bytes."]),
)
MESSAGES = NOISE_MESSAGES | KUBELET_MESSAGES


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_parse_pull_never_raises_on_arbitrary_json(value: Any) -> None:
    assert isinstance(parse_pull(value), Pull | NotAPull)


@settings(max_examples=500)
@given(st.dictionaries(EVENT_KEYS, JSON, max_size=8))
def test_parse_pull_never_raises_on_event_shaped_json(event: dict[str, Any]) -> None:
    assert isinstance(parse_pull(event), Pull | NotAPull)


@settings(max_examples=500)
@given(
    st.sampled_from([core_event, events_v1_event]),
    st.dictionaries(EVENT_KEYS, JSON, max_size=3),
    st.dictionaries(OBJECT_KEYS, JSON | st.text(max_size=40), max_size=3),
    MESSAGES,
)
def test_parse_pull_never_raises_on_mutated_real_events(
    build: Any, changes: dict[str, Any], object_changes: dict[str, Any], message: str
) -> None:
    event = build(message)
    event.update(changes)
    for key in ("involvedObject", "regarding"):
        if isinstance(event.get(key), dict):
            event[key] = {**event[key], **object_changes}
    before = copy.deepcopy(event)
    result = parse_pull(event)
    assert isinstance(result, Pull | NotAPull)
    assert event == before
    if isinstance(result, Pull):
        assert result.image and result.pulled_at.tzinfo is not None and result.event_count >= 1


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_parse_go_duration_never_raises(text: str) -> None:
    result = parse_go_duration(text)
    assert result is None or isinstance(result, float)


@settings(max_examples=300)
@given(
    st.integers(min_value=0, max_value=10**7),
    st.sampled_from(["h", "m", "s", "ms", "µs", "us", "ns"]),
)
def test_go_duration_single_unit(number: int, unit: str) -> None:
    factor = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}[unit]
    assert parse_go_duration(f"{number}{unit}") == number * factor


@settings(max_examples=300)
@given(JSON, JSON)
def test_confirm_and_annotation_never_raise(pod: Any, annotation: Any) -> None:
    real = make_pod()
    real["metadata"]["annotations"]["pulltag.dev/images"] = annotation
    for candidate in (pod, real):
        record = admission_from_annotation(candidate)
        confirm(make_pull(), record, candidate if isinstance(candidate, dict) else None)


# --- plan ----------------------------------------------------------------------------------------------

NAMES = st.text(max_size=80)
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Pacific/Kiritimati"])
TEMPLATES = st.sampled_from(
    [
        "{prefix}_{namespace}_{timestamp}",
        "{prefix}_{cluster}_{namespace}_{timestamp}",
        "{prefix}-{pod}-{container}-{node}",
        "{node}",
        "{pod}{timestamp}",
        "{namespace}.{container}",
    ]
)
FORMATS = st.sampled_from(["%Y%m%d-%H%M%S", "%Y-%m-%dT%H:%M:%S%z", "%s", "%c", "%j %Z", "%%"])
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([timezone(timedelta(hours=h)) for h in (-12, -3, 5, 14)]),
)


@st.composite
def confirmed_pulls(draw: st.DrawFn) -> Confirmed:
    pull = make_pull(
        namespace=draw(NAMES),
        pod_name=draw(NAMES),
        container=draw(NAMES),
        node=draw(NAMES),
        pulled_at=draw(TIMES),
        event_count=draw(st.integers(min_value=1, max_value=10**6)),
    )
    ref = parse_reference("harbor.example.com/team/app:v1")
    return Confirmed(pull=pull, image=ref, digest=DIGEST, repository=ref.repository, registry=ref.registry)


@st.composite
def all_settings(draw: st.DrawFn) -> Settings:
    tagging = TaggingSettings(
        prefix=draw(st.sampled_from(["deployed", "x", "_p.1-"])),
        template=draw(TEMPLATES),
        timestamp_format=draw(FORMATS),
        timezone=draw(ZONES),
        scope=draw(st.sampled_from(["image", "namespace", "every"])),
        cluster=draw(st.sampled_from(["", "eu-1", "c.2"])),
    )
    return Settings(tagging=tagging, registries=(RegistrySettings(host="harbor.example.com"),))


@settings(max_examples=500, deadline=None)
@given(confirmed_pulls(), all_settings())
def test_plan_gives_a_valid_tag_or_a_skip(confirmed: Confirmed, config: Settings) -> None:
    result = plan(confirmed, config)
    assert isinstance(result, TagPlan | Skip)
    if isinstance(result, TagPlan):
        assert is_valid_tag(result.tag)
        assert len(result.tag) <= 128
    else:
        assert result.reason in {"filtered", "invalid_tag"}


@settings(max_examples=300, deadline=None)
@given(confirmed_pulls(), all_settings())
def test_plan_is_deterministic(confirmed: Confirmed, config: Settings) -> None:
    # Rebuilt from equal values (as another replica would), not merely the same objects.
    twin = Confirmed(
        pull=Pull(**{f: getattr(confirmed.pull, f) for f in confirmed.pull.__dataclass_fields__}),
        image=parse_reference(confirmed.image.canonical),
        digest=confirmed.digest,
        repository=confirmed.repository,
        registry=confirmed.registry,
    )
    assert plan(confirmed, config) == plan(twin, config)


@settings(max_examples=300, deadline=None)
@given(
    confirmed_pulls(),
    all_settings(),
    st.sampled_from([timezone(timedelta(hours=h)) for h in (-11, 0, 3, 13)]),
)
def test_the_tag_depends_on_the_instant_not_the_offset_it_was_written_in(
    confirmed: Confirmed, config: Settings, offset: timezone
) -> None:
    shifted_pull = make_pull(
        **{f: getattr(confirmed.pull, f) for f in confirmed.pull.__dataclass_fields__ if f != "pulled_at"},
        pulled_at=confirmed.pull.pulled_at.astimezone(offset),
    )
    shifted = Confirmed(
        shifted_pull, confirmed.image, confirmed.digest, confirmed.repository, confirmed.registry
    )
    a, b = plan(confirmed, config), plan(shifted, config)
    if isinstance(a, TagPlan) and isinstance(b, TagPlan):
        assert (a.tag, a.pulled_at, a.dedup_key) == (b.tag, b.pulled_at, b.dedup_key)
    else:
        assert a == b


# --- fast paths ----------------------------------------------------------------------------------------
# parse_pull reads an event of the common shape on a fast path and leaves any other to the general reading;
# timestamps of the API server's shapes are read by the C parser; the informer decodes watch lines without
# json.loads' generality. Each must answer exactly as the straightforward version does:
# `reference_parse_pull` is parse_pull as it was written before the fast paths, with the general readers.


def reference_parse_pull(event: Any) -> Pull | NotAPull:
    if not isinstance(event, Mapping):
        return NotAPull("not_an_event")
    if event.get("reason") != "Pulled":
        return NotAPull("wrong_reason")
    if pulls._reporter(event) != "kubelet":
        return NotAPull("not_kubelet")
    obj = pulls._mapping(event.get("involvedObject")) or pulls._mapping(event.get("regarding"))
    if obj.get("kind") != "Pod" or obj.get("apiVersion") != "v1":
        return NotAPull("not_a_pod")
    namespace, name, uid = (pulls._str(obj.get(key)) for key in ("namespace", "name", "uid"))
    if not (namespace and name and uid):
        return NotAPull("not_a_pod")
    container = pulls._container(obj.get("fieldPath"))
    if container is None:
        return NotAPull("bad_field_path")
    message = pulls._parse_message(pulls._str(event.get("message")) or pulls._str(event.get("note")))
    if message is None:
        return NotAPull("unparsable_message")
    event_uid = pulls._str(pulls._mapping(event.get("metadata")).get("uid"))
    if not event_uid:
        return NotAPull("no_event_uid")
    series = pulls._mapping(event.get("series"))
    candidates = (
        event.get("lastTimestamp"),
        event.get("deprecatedLastTimestamp"),
        series.get("lastObservedTime"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        event.get("deprecatedFirstTimestamp"),
        pulls._mapping(event.get("metadata")).get("creationTimestamp"),
    )
    pulled_at = next((t for t in map(pulls._parse_timestamp, candidates) if t is not None), None)
    if pulled_at is None:
        return NotAPull("no_timestamp")
    image, already_present, pull_seconds, waiting_seconds, size = message
    return Pull(
        event_uid=event_uid,
        event_count=pulls._event_count(event),
        namespace=namespace,
        pod_name=name,
        pod_uid=uid,
        container_kind=container[0],
        container=container[1],
        image=image,
        already_present=already_present,
        pulled_at=pulled_at,
        node=pulls._node(event),
        pull_seconds=pull_seconds,
        waiting_seconds=waiting_seconds,
        image_size=size,
    )


def assert_same_answer(event: Any) -> Pull | NotAPull:
    before = copy.deepcopy(event)
    got, expected = parse_pull(event), reference_parse_pull(event)
    assert repr(event) == repr(before)  # unchanged (repr: NaN is not equal to itself)
    assert type(got) is type(expected)
    assert got == expected
    if isinstance(got, Pull) and isinstance(expected, Pull):
        assert hash(got) == hash(expected) and repr(got) == repr(expected)
        # Equal is not enough: the same types (a float stays a float) and the same offset.
        assert [type(v) for v in vars(got).values()] == [type(v) for v in vars(expected).values()]
        assert got.pulled_at.utcoffset() == expected.pulled_at.utcoffset()
        assert got.pulled_at.tzinfo == expected.pulled_at.tzinfo
    return got


# Messages near the common shape: every piece of it swapped for a near miss now and then.
NUMBERS = st.sampled_from(
    ["1.234", "350", "0", "1.", ".5", "00012.50000", "9" * 30, "1.2.3", "", "-1", "1e3"]
)
UNITS = st.sampled_from(["s", "ms", "µs", "us", "m", "h", "", "S", "m2s", "m2.5s"])
SIZES = st.sampled_from(["", ". Image size: 0 bytes.", ". Image size: 12345678 bytes."]) | st.builds(
    ". Image size: {} bytes.".format, st.sampled_from(["9" * 20, "9" * 21, "1 2", "", "-1", "٣"])
)
COMMON_MESSAGES = st.builds(
    lambda prefix, image, pull, wait, size, tail: (
        f'{prefix}Successfully pulled image "{image}" in {pull} ({wait} including waiting){size}{tail}'
    ),
    st.sampled_from(["", "(combined from similar events): ", "(combined from similar events): " * 2]),
    IMAGE_TEXT | st.sampled_from(["", "nginx:1.25", 'a"b', "a\\", "é", "a\nb"]),
    st.builds(str.__add__, NUMBERS, UNITS),
    st.builds(str.__add__, NUMBERS, UNITS),
    SIZES,
    st.sampled_from(["", ".", " ", "\n", "x" * 4000]),
)
TIMESTAMP_TEXT = st.sampled_from(
    [
        "2026-11-26T10:15:02Z",
        "2026-11-26T10:15:02.123456Z",
        "2026-11-26T10:15:02.123Z",
        "2026-11-26T10:15:02.123456789Z",
        "2026-11-26t10:15:02z",
        "2026-11-26 10:15:02Z",
        "2026-11-26T10:15:02+05:30",
        "2026-11-26T24:00:00Z",
        "2026-02-30T10:15:02Z",
        "2026-W48-4T10:15:02Z",
        "2026-11-26T101502.5Z",
        "20261126T101502Z",
        "2026-11-26T10:15:02",
        "",
    ]
)


@st.composite
def fixed_shape_timestamps(draw: st.DrawFn) -> str:
    """The shapes the fast reader takes, with any character (often a digit) in any place."""
    template = draw(st.sampled_from(["dddd-dd-ddTdd:dd:ddZ", "dddd-dd-ddTdd:dd:dd.ddddddZ"]))
    chars = st.sampled_from("0123456789") | st.characters(max_codepoint=0x700)
    return "".join(
        draw(chars) if c == "d" else draw(st.sampled_from([c, c, c, c, "-", ":", ".", "+"])) for c in template
    )


TIMESTAMPS = TIMESTAMP_TEXT | fixed_shape_timestamps() | JSON
COUNTS = st.sampled_from([None, 0, 1, 7, -1, True, 2.0, "3", 10**20])


@settings(max_examples=600)
@given(JSON)
def test_parse_pull_agrees_with_the_reference_on_arbitrary_json(value: Any) -> None:
    assert_same_answer(value)


@settings(max_examples=600)
@given(st.dictionaries(EVENT_KEYS, JSON, max_size=8))
def test_parse_pull_agrees_with_the_reference_on_event_shaped_json(event: dict[str, Any]) -> None:
    assert_same_answer(event)


@settings(max_examples=1500)
@given(
    st.sampled_from([core_event, events_v1_event]),
    MESSAGES | COMMON_MESSAGES,
    st.dictionaries(EVENT_KEYS, JSON, max_size=2),
    st.dictionaries(OBJECT_KEYS, JSON | st.text(max_size=40), max_size=2),
    st.dictionaries(
        st.sampled_from(["lastTimestamp", "eventTime", "firstTimestamp", "deprecatedLastTimestamp"]),
        TIMESTAMPS,
        max_size=2,
    ),
    st.dictionaries(st.sampled_from(["count", "deprecatedCount"]), COUNTS, max_size=2),
    st.sampled_from([None, {}, {"count": 4}, {"count": 0, "lastObservedTime": "2026-11-26T11:00:00Z"}, []]),
    st.sampled_from([None, {}, {"host": ""}, {"host": "n"}, {"component": "kubelet"}, "kubelet"]),
)
def test_parse_pull_agrees_with_the_reference_on_mutated_real_events(
    build: Any,
    message: str,
    changes: dict[str, Any],
    object_changes: dict[str, Any],
    times: dict[str, Any],
    counts: dict[str, Any],
    series: Any,
    source: Any,
) -> None:
    event = build(message)
    event.update(times)
    event.update(counts)
    if series is not None:
        event["series"] = series
    if source is not None:
        event["source"] = source
    event.update(changes)
    for key in ("involvedObject", "regarding"):
        if isinstance(event.get(key), dict):
            event[key] = {**event[key], **object_changes}
    assert_same_answer(event)


@pytest.mark.parametrize(
    "message",
    [
        'Successfully pulled image "nginx:1.25" in 1.234s (1.5s including waiting). Image size: 123 bytes.',
        'Successfully pulled image "nginx:1.25" in 350ms (2.5s including waiting)',
        '(combined from similar events): Successfully pulled image "a@sha256:0" in 0s (0s including waiting)',
        'Successfully pulled image "nginx" in 1m2.5s (1m2.5s including waiting). Image size: 1 bytes.',
        'Successfully pulled image "ngi\\"nx" in 1.5s (1.5s including waiting)',
        'Successfully pulled image "a" in 1s (1s including waiting). Image size: 1' + "0" * 20 + " bytes.",
        'Container image "nginx" already present on machine',
    ],
)
def test_common_and_near_common_messages_read_as_the_general_reader_reads_them(message: str) -> None:
    assert_same_answer(core_event(message))
    assert_same_answer(core_event(message, reportingComponent="", source={"component": "kubelet"}))


@settings(max_examples=1000)
@given(TIMESTAMPS)
def test_fast_timestamps_agree_with_the_general_reader(value: Any) -> None:
    for _ in range(2):  # the second time from the cache
        got, expected = parse_timestamp(value), pulls._parse_timestamp(value)
        assert got == expected
        if got is not None and expected is not None:
            assert got.tzinfo == expected.tzinfo and got.utcoffset() == expected.utcoffset()


def test_the_caches_stay_bounded() -> None:
    for i in range(3000):
        assert parse_timestamp(f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}Z") is not None
        event = with_object(core_event(), fieldPath=f"spec.containers{{c{i}}}")
        assert _pull_of(event).container == f"c{i}"
    assert len(pulls._TIMESTAMPS) <= pulls._TIMESTAMPS_MAX
    assert len(pulls._FIELD_PATHS) <= pulls._FIELD_PATHS_MAX


def _pull_of(event: Any) -> Pull:
    result = assert_same_answer(event)
    assert isinstance(result, Pull), result
    return result


WATCH_LINES = st.one_of(
    st.builds(
        lambda value, before, after: (before + json.dumps(value) + after).encode(),
        JSON,
        st.sampled_from(["", " ", "\t"]),
        st.sampled_from(["", " ", "\r", "\n", " x", "}", "{}"]),
    ),
    st.builds(
        lambda value, encoding, cut: json.dumps({"type": "ADDED", "object": value}).encode(encoding)[:cut],
        JSON,
        st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]),
        st.none() | st.integers(min_value=0, max_value=40),
    ),
    st.builds(lambda raw: b"{" + raw, st.binary(max_size=20)),
    st.binary(max_size=20),
    st.sampled_from(
        [b"{", b"{\x00", b'{"a": 1}\x00', b'{"a": NaN}', b'{"a": "\xed\xa0\x80"}', b'{"a": "\xff"}']
    ),
)


@settings(max_examples=1000)
@given(WATCH_LINES)
def test_watch_lines_decode_as_json_loads_decodes_them(line: bytes) -> None:
    try:
        expected: Any = json.loads(line)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            _decode_line(line)
    else:
        assert repr(_decode_line(line)) == repr(expected)


@pytest.mark.parametrize(
    "message",
    [
        'Successfully pulled image "nginx:1.25" in 1.234s (1.5s including waiting). Image size: 123 bytes.',
        'Successfully pulled image "nginx:1.25" in 350ms (350ms including waiting)',
        'Container image "nginx:1.25" already present on machine',
        'Container image "nginx:1.25" already present on machine and can be accessed by the pod',
        '(combined from similar events): Container image "nginx:1.25" already present on machine',
    ],
)
def test_the_common_shape_takes_the_fast_path(message: str) -> None:
    event = core_event(message)
    fast = pulls._parse_common(event)
    assert fast is not None
    assert fast == pulls._parse_any(event) == assert_same_answer(event)


@given(
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", fullmatch=True),
    digest_hex=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    other_hex=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
def test_fallback_tag_is_a_valid_tag_that_differs_per_digest(
    tag: str, digest_hex: str, other_hex: str
) -> None:
    name = fallback_tag(tag, f"sha256:{digest_hex}")
    assert is_valid_tag(name) and len(name) <= 128
    assert name != tag and name.startswith(tag[:115])
    assert name == fallback_tag(tag, f"sha256:{digest_hex}")  # replicas agree
    if digest_hex[:12] != other_hex[:12]:
        assert name != fallback_tag(tag, f"sha256:{other_hex}")
