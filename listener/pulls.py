"""Event → pull: recognise the kubelet's `Pulled` events in raw API objects (flow step 2).

`parse_pull` reads a JSON-decoded core/v1 Event (or an events.k8s.io/v1 Event) and returns either a
`Pull` or a `NotAPull` saying why not. It never raises: events come from the API server, but anyone
with `create events` can post one, so every field is treated as untrusted and possibly mistyped.

The message formats are the kubelet's own (pkg/kubelet/images/image_manager.go), across versions:

- before 1.19: ``fmt.Sprintf("Successfully pulled image %q", container.Image)``
- 1.19 on (kubernetes#91563): ``fmt.Sprintf("Successfully pulled image %q in %v", container.Image,
  time.Since(startTime))`` -- not truncated, so ``in 49.657983991s``
- 1.26 on, backported to 1.25 patches (kubernetes#111772, #114271):
  ``"Successfully pulled image %q in %v (%v including waiting)"`` -- the pull itself, then the wall time
  since the attempt was announced (serialised pulls wait for each other), both ``Truncate(time.Millisecond)``
- 1.30 on (kubernetes#121719, with the image pull duration metric):
  ``"Successfully pulled image %q in %v (%v including waiting). Image size: %v bytes."``
- every version: ``fmt.Sprintf("Container image %q already present on machine", container.Image)``
- 1.33+ (KubeletEnsureSecretPulledImages, default from 1.35):
  ``"Container image %q already present on machine and can be accessed by the pod"``

client-go's EventAggregator (tools/record/events_cache.go) rewrites the message of the eleventh and
later similar events as ``"(combined from similar events): " + message``; the involvedObject (with its
fieldPath) is still the current event's, so such events parse like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pulltag.contract import parse_field_path

__all__ = [
    "NotAPull",
    "Pull",
    "parse_go_duration",
    "parse_pull",
    "parse_timestamp",
    "seen_key",
]

PULLED_REASON = "Pulled"
KUBELET = "kubelet"
COMBINED_PREFIX = "(combined from similar events): "

# A Go %q string: the quotes, and anything inside except an unescaped quote. Written as runs of plain
# characters between escapes (not one alternation per character), which matches the same strings ten
# times faster and never backtracks.
_GO_QUOTED = r'"(?P<image>[^"\\]*(?:\\.[^"\\]*)*)"'
# Go's time.Duration.String() and everything time.ParseDuration accepts: "1h0m0s", "1m2.5s", "350ms",
# "2µs" (U+00B5, what String() prints), "2μs" (U+03BC) and "2us", "0s", "0", and a sign.
_DURATION_UNIT = r"(?:ns|us|µs|μs|ms|h|m|s)"
# The number is written so each digit string splits one way only: "\d+\.?\d*" would let "11s11s…"
# backtrack exponentially on a near miss.
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = rf"[-+]?(?:(?:{_NUMBER}{_DURATION_UNIT})+|0)"
_DURATION_PART_RE = re.compile(rf"({_NUMBER})({_DURATION_UNIT})", re.ASCII)
_DURATION_RE = re.compile(_DURATION, re.ASCII)
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

_PULLED_RE = re.compile(
    rf"Successfully pulled image {_GO_QUOTED}"
    rf"(?: in (?P<pull>{_DURATION})(?: \((?P<wait>{_DURATION}) including waiting\))?)?"
    r"(?:\. Image size: (?P<size>\d{1,20}) bytes\.)?",  # a uint64 has at most 20 digits
    re.ASCII,
)
_PRESENT_RE = re.compile(
    rf"Container image {_GO_QUOTED} already present on machine(?: and can be accessed by the pod)?", re.ASCII
)
# Where an Event's time can be, most specific first: (field, field inside it or None).
_TIME_FIELDS = (
    ("lastTimestamp", None),
    ("deprecatedLastTimestamp", None),
    ("series", "lastObservedTime"),
    ("eventTime", None),
    ("firstTimestamp", None),
    ("deprecatedFirstTimestamp", None),
    ("metadata", "creationTimestamp"),
)

# RFC 3339 as the API server writes metav1.Time (seconds) and MicroTime (microseconds).
_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)

# Go's strconv.Quote escapes; \x, \u, \U and octal are decoded separately.
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_SIMPLE_ESCAPES.update({'"': '"', "\\": "\\", "'": "'"})
_ESCAPE_RE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{3}|.)", re.DOTALL)
# Longer messages are not the kubelet's: refuse them before running any regular expression.
_MAX_MESSAGE_LENGTH = 4096


@dataclass(frozen=True)
class Pull:
    """One image pull (or already-present image) the kubelet reported for one container of a pod."""

    event_uid: str
    event_count: int
    namespace: str
    pod_name: str
    pod_uid: str
    container_kind: str  # "containers" | "initContainers" | "ephemeralContainers"
    container: str
    image: str  # as written in the message, unnormalised
    already_present: bool
    pulled_at: datetime  # aware
    node: str  # "" when the event names no node
    pull_seconds: float | None = None
    waiting_seconds: float | None = None
    image_size: int | None = None


@dataclass(frozen=True)
class NotAPull:
    """Why an event is not a pull; `reason` is short and stable, fit for a metric label."""

    reason: str


def seen_key(pull: Pull) -> str:
    """The key that marks this occurrence handled: a repeated event (count+1) is a new occurrence."""
    return f"{pull.event_uid}/{pull.event_count}"


def parse_pull(event: object) -> Pull | NotAPull:
    """Turn a JSON-decoded Event into a `Pull`, or say why it is not one. Never raises: every field is
    read by a reader that accepts anything."""
    if not isinstance(event, dict):
        return NotAPull("not_an_event")
    if event.get("reason") != PULLED_REASON:
        return NotAPull("wrong_reason")
    if _reporter(event) != KUBELET:
        return NotAPull("not_kubelet")
    obj = _mapping(event.get("involvedObject")) or _mapping(event.get("regarding"))
    pod = _pod_identity(obj)
    if pod is None:
        return NotAPull("not_a_pod")
    container = parse_field_path(obj.get("fieldPath"))
    if container is None:
        return NotAPull("bad_field_path")
    message = _parse_message(_str(event.get("message")) or _str(event.get("note")))
    if message is None:
        return NotAPull("unparsable_message")
    event_uid = _str(_mapping(event.get("metadata")).get("uid"))
    if not event_uid:
        return NotAPull("no_event_uid")
    pulled_at = _event_time(event)
    if pulled_at is None:
        return NotAPull("no_timestamp")
    image, already_present, pull_seconds, waiting_seconds, size = message
    return Pull(
        event_uid=event_uid,
        event_count=_event_count(event),
        namespace=pod[0],
        pod_name=pod[1],
        pod_uid=pod[2],
        container_kind=container[0],
        container=container[1],
        image=image,
        already_present=already_present,
        pulled_at=pulled_at,
        node=_node(event),
        pull_seconds=pull_seconds,
        waiting_seconds=waiting_seconds,
        image_size=size,
    )


# ---------------------------------------------------------------------------------------------------
# Field readers: each accepts anything and returns a typed value or an "absent" value.


def _mapping(value: object) -> dict[str, Any]:
    # JSON objects decode to dicts; anything else reads as an empty object.
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _reporter(event: dict[str, Any]) -> str:
    """Who reported the event. Old kubelets (before reportingComponent existed) fill only `source`."""
    for key in ("reportingComponent", "reportingController"):  # core/v1, events.k8s.io/v1
        value = event.get(key)
        if value is not None and value != "":
            # Set but not a string is malformed: it must not fall through to `source`.
            return value if isinstance(value, str) else ""
    source = _mapping(event.get("source")) or _mapping(event.get("deprecatedSource"))
    return _str(source.get("component"))


def _pod_identity(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the pod the event is about, or None if it is not exactly a v1 Pod."""
    if obj.get("kind") != "Pod" or obj.get("apiVersion") != "v1":
        return None
    namespace, name, uid = _str(obj.get("namespace")), _str(obj.get("name")), _str(obj.get("uid"))
    if not (namespace and name and uid):
        return None
    return namespace, name, uid


def _node(event: dict[str, Any]) -> str:
    source = _mapping(event.get("source")) or _mapping(event.get("deprecatedSource"))
    return _str(source.get("host")) or _str(event.get("reportingInstance"))


def _event_count(event: dict[str, Any]) -> int:
    """The occurrence number. The largest count any field gives, so it only ever grows: the seen key
    must change with every repetition whether the server bumped `count` or `series.count`."""
    largest = 1
    for count in (
        event.get("count"),
        event.get("deprecatedCount"),
        _mapping(event.get("series")).get("count"),
    ):
        if type(count) is int and count > largest:  # a JSON number, not true/false (bool is an int subclass)
            largest = count
    return largest


def _event_time(event: dict[str, Any]) -> datetime | None:
    """When the (latest occurrence of the) pull happened: the most specific timestamp present."""
    for outer, inner in _TIME_FIELDS:
        value = event.get(outer)
        if inner is not None:
            value = _mapping(value).get(inner)
        parsed = parse_timestamp(value)
        if parsed is not None:
            return parsed
    return None


def parse_timestamp(value: object) -> datetime | None:
    """An aware datetime from RFC 3339 text (with or without fractional seconds, any offset), else None."""
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP_RE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    # Python keeps microseconds; digits beyond six (RFC 3339 allows any) are dropped, not rounded.
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        if zulu:
            tz = UTC
        else:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(offset if sign == "+" else -offset)
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz)
    except ValueError:  # February 30th, hour 25, offset beyond 24 h…
        return None


# ---------------------------------------------------------------------------------------------------
# Messages


def _parse_message(message: str) -> tuple[str, bool, float | None, float | None, int | None] | None:
    """(image, already_present, pull_seconds, waiting_seconds, image_size), or None if not recognised."""
    if not message or len(message) > _MAX_MESSAGE_LENGTH:
        return None
    message = message.removeprefix(COMBINED_PREFIX)
    match = _PULLED_RE.fullmatch(message)
    if match is not None:
        image = _go_unquote(match["image"])
        size = int(match["size"]) if match["size"] is not None else None
        # The expression has checked both durations' syntax already.
        pull = _seconds(match["pull"]) if match["pull"] is not None else None
        wait = _seconds(match["wait"]) if match["wait"] is not None else None
        return (image, False, pull, wait, size) if image else None
    match = _PRESENT_RE.fullmatch(message)
    if match is not None:
        image = _go_unquote(match["image"])
        return (image, True, None, None, None) if image else None
    return None


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration string (`1h0m0s`, `1m2.5s`, `350ms`, `2µs`, `3us`, `0`), else None."""
    if not isinstance(text, str) or _DURATION_RE.fullmatch(text) is None:
        return None
    return _seconds(text)


def _seconds(duration: str) -> float:
    """The seconds of a duration string already known to match `_DURATION`."""
    total = 0.0  # "0" has no parts
    for number, unit in _DURATION_PART_RE.findall(duration):
        total += float(number) * _UNIT_SECONDS[unit]
    return -total if duration.startswith("-") else total


def _go_unquote(body: str) -> str:
    """The text inside a Go %q string. \\x escapes stand for raw bytes (invalid UTF-8 in the original),
    so the result is assembled as bytes and decoded, with U+FFFD for what is not UTF-8."""
    if "\\" not in body:
        return body
    out = bytearray()
    pos = 0
    for match in _ESCAPE_RE.finditer(body):
        out += body[pos : match.start()].encode("utf-8", "surrogatepass")
        out += _escape_bytes(match.group(1))
        pos = match.end()
    out += body[pos:].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "replace")


def _escape_bytes(escape: str) -> bytes:
    head = escape[0]
    if head == "x" and len(escape) == 3:
        return bytes([int(escape[1:], 16)])
    if head in "uU" and len(escape) > 1:
        code = int(escape[1:], 16)
        return chr(code).encode("utf-8", "surrogatepass") if code <= 0x10FFFF else "\ufffd".encode()
    if len(escape) == 3 and escape.isdigit():
        return bytes([int(escape, 8) & 0xFF])
    # Go only writes the escapes above; anything else is kept as the character itself.
    return _SIMPLE_ESCAPES.get(escape, escape).encode("utf-8", "surrogatepass")
