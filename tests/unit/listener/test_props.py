"""Properties: parse_pull never raises; plan yields a grammar-valid tag or a Skip; plan is deterministic."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.confirm import Confirmed, admission_from_annotation, confirm
from listener.plan import Skip, TagPlan, plan
from listener.pulls import NotAPull, Pull, parse_go_duration, parse_pull
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
