"""Properties: parse_pull never raises, and reads back the parts an event was built from; timestamps read
back the instant they were written from; plan yields a grammar-valid tag or a Skip; plan is
deterministic."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.confirm import Confirmed, admission_from_annotation, confirm
from listener.plan import Skip, TagPlan, fallback_tag, plan
from listener.pulls import NotAPull, Pull, parse_go_duration, parse_pull, parse_timestamp
from pulltag.config import RegistrySettings, Settings, TaggingSettings
from pulltag.images import is_valid_tag, parse_reference

from .factories import DIGEST, core_event, events_v1_event, make_pod, make_pull

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
    return Confirmed(pull=pull, digest=DIGEST, repository=ref.repository, registry=ref.registry)


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
    shifted = Confirmed(shifted_pull, confirmed.digest, confirmed.repository, confirmed.registry)
    a, b = plan(confirmed, config), plan(shifted, config)
    if isinstance(a, TagPlan) and isinstance(b, TagPlan):
        assert (a.tag, a.pulled_at, a.dedup_key) == (b.tag, b.pulled_at, b.dedup_key)
    else:
        assert a == b


# --- parse_pull reads back what an event was built from ---------------------------------------------------
# Events are assembled here from drawn parts, in the kubelet's message formats (see listener/pulls.py),
# and the parsed Pull must carry exactly those parts: an outcome checked from outside the parser.

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's %q (strconv.Quote) of `text`: printable characters as they are, the rest escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def go_duration(ms: int) -> str:
    """Go's time.Duration.String() of a whole number of milliseconds (the kubelet truncates to ms)."""
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{seconds}" + (f".{millis:03d}".rstrip("0") if millis else "") + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text


# (format, has pull time, has waiting time, has size, already present)
FORMATS_BY_VERSION = [
    ("Successfully pulled image {image}", False, False, False, False),  # before 1.19
    ("Successfully pulled image {image} in {pull}", True, False, False, False),  # 1.19
    ("Successfully pulled image {image} in {pull} ({wait} including waiting)", True, True, False, False),
    (
        "Successfully pulled image {image} in {pull} ({wait} including waiting). Image size: {size} bytes.",
        True,
        True,
        True,
        False,
    ),  # 1.30
    ("Container image {image} already present on machine", False, False, False, True),
    (
        "Container image {image} already present on machine and can be accessed by the pod",
        False,
        False,
        False,
        True,
    ),
]
DNS_LABELS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
UIDS = st.uuids().map(str)
IMAGES_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@st.composite
def built_events(draw: st.DrawFn) -> tuple[dict[str, Any], Pull]:
    """(an Event as the API server serves it, the Pull it reports), from drawn parts."""
    template, has_pull, has_wait, has_size, present = draw(st.sampled_from(FORMATS_BY_VERSION))
    image = draw(IMAGES_ANY_TEXT)
    pull_ms, wait_ms = draw(st.integers(0, 10**8)), draw(st.integers(0, 10**8))
    size = draw(st.integers(0, 2**64 - 1))
    combined = draw(st.sampled_from(["", "(combined from similar events): "]))
    message = combined + template.format(
        image=go_quote(image), pull=go_duration(pull_ms), wait=go_duration(wait_ms), size=size
    )
    kind = draw(st.sampled_from(["containers", "initContainers", "ephemeralContainers"]))
    container, namespace, pod_name, node = (
        draw(DNS_LABELS),
        draw(DNS_LABELS),
        draw(DNS_LABELS),
        draw(DNS_LABELS),
    )
    pod_uid, event_uid = draw(UIDS), draw(UIDS)
    count = draw(st.integers(1, 10**6))
    when = draw(INSTANTS)
    involved = {
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": namespace,
        "name": pod_name,
        "uid": pod_uid,
        "fieldPath": f"spec.{kind}{{{container}}}",
    }
    if draw(st.booleans()):  # core/v1: metav1.Time, seconds only
        when = when.replace(microsecond=0)
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"uid": event_uid, "namespace": namespace},
            "involvedObject": involved,
            "reason": "Pulled",
            "message": message,
            "source": {"component": "kubelet", "host": node},
            "lastTimestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": count,
            "reportingComponent": "kubelet",
        }
    else:  # events.k8s.io/v1: MicroTime
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"uid": event_uid, "namespace": namespace},
            "regarding": involved,
            "reason": "Pulled",
            "note": message,
            "reportingController": "kubelet",
            "reportingInstance": node,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "series": {"count": count, "lastObservedTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        }
    expected = Pull(
        event_uid=event_uid,
        event_count=count,
        namespace=namespace,
        pod_name=pod_name,
        pod_uid=pod_uid,
        container_kind=kind,
        container=container,
        image=image,
        already_present=present,
        pulled_at=when,
        node=node,
        pull_seconds=pull_ms / 1000 if has_pull else None,
        waiting_seconds=wait_ms / 1000 if has_wait else None,
        image_size=size if has_size else None,
    )
    return json.loads(json.dumps(event)), expected  # as json.loads gives it to the informer


@settings(max_examples=500)
@given(built_events())
def test_parse_pull_reads_back_the_parts_of_a_built_event(case: tuple[dict[str, Any], Pull]) -> None:
    event, expected = case
    pull = parse_pull(event)
    assert isinstance(pull, Pull), (pull, event)
    # Durations are sums of Go's units, so they match to the last bits only.
    for field in ("pull_seconds", "waiting_seconds"):
        got, want = getattr(pull, field), getattr(expected, field)
        assert (got is None) is (want is None)
        if got is not None:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert {**vars(pull), "pull_seconds": None, "waiting_seconds": None} == {
        **vars(expected),
        "pull_seconds": None,
        "waiting_seconds": None,
    }
    assert pull.pulled_at.utcoffset() == timedelta(0)


OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@settings(max_examples=500)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS | st.just(UTC)
    ),
    st.integers(0, 9),
    st.sampled_from(["T", "t", " "]),
    st.booleans(),
)
def test_timestamps_read_back_the_instant_they_were_written_from(
    when: datetime, digits: int, separator: str, zulu_letter: bool
) -> None:
    offset = when.utcoffset()
    assert offset is not None
    if offset == timedelta(0) and zulu_letter:
        zone = "Z"
    else:
        sign, minutes = ("-" if offset < timedelta(0) else "+"), abs(int(offset.total_seconds())) // 60
        zone = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    # RFC 3339 allows any number of fraction digits; Python keeps six and drops the rest.
    fraction = f"{when.microsecond:06d}{'7' * 3}"[:digits]
    date = f"{when.year:04d}-{when.month:02d}-{when.day:02d}"  # strftime's %Y does not pad years < 1000
    text = f"{date}{separator}{when:%H:%M:%S}" + (f".{fraction}" if digits else "") + zone
    parsed = parse_timestamp(text)
    kept = int(fraction[:6].ljust(6, "0")) if digits else 0
    assert parsed == when.replace(microsecond=kept)
    assert parsed is not None and parsed.utcoffset() == offset


@settings(max_examples=300)
@given(JSON | st.text(max_size=30))
def test_parse_timestamp_never_raises(value: Any) -> None:
    parsed = parse_timestamp(value)
    assert parsed is None or parsed.tzinfo is not None


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
