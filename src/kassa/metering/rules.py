"""Pure metering rules: parsing an incoming event, meter filters, and the aggregations
computed straight from events (the definition the rollups must agree with)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

Aggregation = Literal["count", "sum", "max", "unique_count", "latest", "time_weighted_avg"]
VALUE_AGGREGATIONS = frozenset({"sum", "max", "latest", "time_weighted_avg"})
MAX_ID = 255
MAX_PROPERTIES = 50
MAX_BATCH = 10_000
_PRECISION = 60
# Bounds of every number an event carries (its value and any other property), and of meter
# readings: a finite decimal with |x| < 10^15 and at most 12 decimal places. Any such value
# times any unit price (< 10^15 minor units, 12 decimals) is exact in 60 digits, and a
# period's total of them stays far inside PostgreSQL's numeric (see docs/limits.md).
MAX_VALUE_EXCLUSIVE = Decimal(10) ** 15
MAX_VALUE_DECIMALS = 12
VALUE_BOUNDS = "a finite decimal with absolute value below 10^15 and at most 12 decimal places"
_INT_BOUND = 10**15
_Q = Decimal(1).scaleb(-MAX_VALUE_DECIMALS)
_WIDE = Context(prec=_PRECISION)
# Size caps of an event's properties (keys, string values, the whole object as JSON)
MAX_PROPERTY_KEY = 100
MAX_PROPERTY_STRING = 1_000
MAX_PROPERTIES_BYTES = 8_192
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
# PostgreSQL accepts UTC offsets up to 15:59 (RFC 3339 allows up to 23:59)
_MAX_OFFSET = timedelta(hours=15, minutes=59)
_FIELDS = frozenset({"event_id", "customer", "event_name", "timestamp", "properties"})


@dataclass(frozen=True)
class MeterSpec:
    id: str
    event_name: str
    aggregation: Aggregation
    value_property: str | None = None
    unique_property: str | None = None
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    index: int
    code: str
    message: str


class ParsedEvent(NamedTuple):  # a tuple: ten thousand of them per batch
    position: int  # the event's index in its batch
    event_id: str
    customer: str
    event_name: str
    ts: datetime
    timestamp: str  # as sent (validated): PostgreSQL parses it again faster than Python formats
    properties: Mapping[str, object]
    meter_id: str | None  # None: the event matched no meter filter (stored, not counted)
    value: Decimal | None
    unique_value: str | None


def matches(filters: Mapping[str, Sequence[str]], properties: Mapping[str, object]) -> bool:
    """Every filtered property present with one of the allowed values (compared as text)."""
    for name, allowed in filters.items():
        if name not in properties or _text(properties[name]) not in allowed:
            return False
    return True


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_NUMERIC = (int, str, Decimal)


def to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or a decimal string, else None."""
    if value.__class__ is int:
        return Decimal(value)  # the hot path: plain integers
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = repr(value)  # JSON parsed without Decimal: the shortest exact repr
    if not isinstance(value, _NUMERIC):
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def bounded(number: Decimal) -> Decimal | None:
    """``number`` within the value bounds (without a positive exponent, so PostgreSQL
    stores it as written), or None when it lies outside them."""
    if not number.is_finite() or number.copy_abs() >= MAX_VALUE_EXCLUSIVE:
        return None
    exp = number.as_tuple().exponent
    assert isinstance(exp, int)
    if exp > 0:
        return number.quantize(_ONE, context=_WIDE)
    if exp < -MAX_VALUE_DECIMALS:
        exact = number.quantize(_Q, context=_WIDE)
        return exact if exact == number else None
    return number


_ONE = Decimal(1)


def parse_timestamp(value: object) -> datetime | None:
    """RFC 3339 with an offset PostgreSQL accepts (at most 15:59), or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    offset = ts.utcoffset()
    if offset is None or abs(offset) > _MAX_OFFSET:
        return None
    try:
        ts.astimezone(UTC)  # year 1 or 9999 may not survive the trip to UTC
    except OverflowError:
        return None
    return ts


def property_fault(properties: Mapping[str, object], check_nul: bool) -> str | None:
    """What is wrong with an event's properties (sizes, numbers, NUL), naming the property,
    or None. Walks nested objects and lists."""
    for key, item in properties.items():
        if len(key) > MAX_PROPERTY_KEY:
            return f"properties: names must be at most {MAX_PROPERTY_KEY} characters"
        fault = _item_fault(item, check_nul)
        if fault is not None:
            return f"properties.{key}: {fault}"
        if check_nul and "\x00" in key:
            return "properties: must not contain NUL characters"
    return None


def _item_fault(item: object, check_nul: bool) -> str | None:
    kind = item.__class__
    if kind is str:
        text: str = item  # type: ignore[assignment]
        if len(text) > MAX_PROPERTY_STRING:
            return f"strings must be at most {MAX_PROPERTY_STRING} characters"
        if check_nul and "\x00" in text:
            return "must not contain NUL characters"
        return None
    if kind is int:
        number: int = item  # type: ignore[assignment]
        return None if -_INT_BOUND < number < _INT_BOUND else f"numbers must be {VALUE_BOUNDS}"
    if kind is Decimal or kind is float:
        decimal = to_decimal(item)
        return (
            None
            if decimal is not None and bounded(decimal) is not None
            else (f"numbers must be {VALUE_BOUNDS}")
        )
    if kind is dict:
        for key, value in item.items():  # type: ignore[attr-defined]
            if len(key) > MAX_PROPERTY_KEY:
                return f"names must be at most {MAX_PROPERTY_KEY} characters"
            if check_nul and "\x00" in key:
                return "must not contain NUL characters"
            fault = _item_fault(value, check_nul)
            if fault is not None:
                return fault
        return None
    if kind is list:
        for value in item:  # type: ignore[attr-defined]
            fault = _item_fault(value, check_nul)
            if fault is not None:
                return fault
    return None


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """An event as the batch endpoint's fast path decodes it: msgspec does the structural
    checks of ``parse_event`` in C. A body that fails them is parsed again the generic way,
    so every rejection still names its index and reason."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
    customer: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
    event_name: str
    timestamp: str
    properties: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_PROPERTIES)] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[EventIn], msgspec.Meta(max_length=MAX_BATCH)]


_batch_decoder = msgspec.json.Decoder(BatchIn, float_hook=Decimal)


def may_hold_nul(body: bytes) -> bool:
    """JSON can carry U+0000 only as an escape; without one, no event needs the check."""
    return b"\\u0000" in body.lower()


def decode_batch(body: bytes) -> list[EventIn] | None:
    """The events of a well-formed batch body (decimals exact), or None when anything in it
    is off: the caller then takes the generic path, which reports each fault by index. A
    body that may carry U+0000 always takes the generic path."""
    if may_hold_nul(body):
        return None
    try:
        return _batch_decoder.decode(body).events
    except (ValueError, RecursionError):  # msgspec.DecodeError, or bytes that are not UTF-8
        return None


def parse_event(
    raw: object,
    index: int,
    meters: Mapping[str, MeterSpec],
    now: datetime,
    max_future: timedelta,
    check_nul: bool = True,
) -> ParsedEvent | Rejection:
    """Validate one incoming event; a rejection names the field and the reason."""
    if raw.__class__ is EventIn:  # decoded by ``decode_batch``: its structure is sound
        event: EventIn = raw
        return _checked(
            index, event.event_id, event.customer, event.event_name, event.timestamp,
            event.properties, meters, now, max_future, False,
        )  # fmt: skip
    if not isinstance(raw, dict):
        return Rejection(index, "invalid_event", "an event must be a JSON object")
    unknown = raw.keys() - _FIELDS
    if unknown:
        return Rejection(index, "invalid_event", f"unknown field {sorted(unknown)[0]!r}")
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID or "\x00" in event_id:
        return Rejection(index, "invalid_event_id", f"event_id: must be 1 to {MAX_ID} characters")
    customer = raw.get("customer")
    if not isinstance(customer, str) or not 0 < len(customer) <= MAX_ID or "\x00" in customer:
        return Rejection(
            index, "invalid_customer", "customer: must be a customer id or external_id"
        )
    name = raw.get("event_name")
    if not isinstance(name, str):
        return Rejection(index, "unknown_meter", f"event_name: no meter for {name!r}")
    return _checked(
        index, event_id, customer, name, raw.get("timestamp"), raw.get("properties"), meters,
        now, max_future, check_nul,
    )  # fmt: skip


def _checked(
    index: int, event_id: str, customer: str, name: str, stamp: object, properties: object,
    meters: Mapping[str, MeterSpec], now: datetime, max_future: timedelta, check_nul: bool,
) -> ParsedEvent | Rejection:  # fmt: skip
    """The checks both paths share, in the order rejections are reported."""
    meter = meters.get(name)
    if meter is None:
        return Rejection(index, "unknown_meter", f"event_name: no meter for {name!r}")
    ts = parse_timestamp(stamp)
    if ts is None:
        return Rejection(index, "invalid_timestamp", "timestamp: must be RFC 3339 with an offset")
    if ts > now + max_future:
        return Rejection(index, "timestamp_in_future", "timestamp: is in the future")
    if ts < EARLIEST_EVENT:
        return Rejection(index, "invalid_timestamp", "timestamp: must not be before 1970")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict) or len(properties) > MAX_PROPERTIES:
        return Rejection(index, "invalid_properties", "properties: must be an object (≤ 50 keys)")
    value: Decimal | None = None
    if meter.value_property is not None:
        raw_value = properties.get(meter.value_property)
        value = to_decimal(raw_value)
        if value is None and meter.aggregation in VALUE_AGGREGATIONS:
            return Rejection(
                index, "invalid_value",
                f"properties.{meter.value_property}: must be a number for this meter",
            )  # fmt: skip
        if value is not None:
            value = bounded(value)
            if value is None:
                return Rejection(
                    index,
                    "invalid_value",
                    f"properties.{meter.value_property}: must be {VALUE_BOUNDS}",
                )
    fault = property_fault(properties, check_nul)
    if fault is not None:
        return Rejection(index, "invalid_properties", fault)
    unique: str | None = None
    if meter.unique_property is not None:
        raw_unique = properties.get(meter.unique_property)
        if raw_unique is None or isinstance(raw_unique, dict | list):
            return Rejection(
                index, "invalid_value",
                f"properties.{meter.unique_property}: required for this meter",
            )  # fmt: skip
        unique = _text(raw_unique)[:MAX_ID]
    counted = not meter.filters or matches(meter.filters, properties)
    return ParsedEvent(
        index, event_id, customer, name, ts, str(stamp), properties,
        meter.id if counted else None, value, unique,
    )  # fmt: skip


# --- aggregations straight from events ---------------------------------------------------


@dataclass(frozen=True)
class Point:
    ts: datetime
    value: Decimal | None
    unique: str | None = None
    order: str = ""  # tie-break for equal timestamps (later ingestion wins "latest")


def aggregate(
    aggregation: Aggregation,
    points: Iterable[Point],
    start: datetime,
    end: datetime,
    before: Point | None = None,
) -> Decimal:
    """The meter's value over [start, end) from its counted events. ``before`` is the last
    event before ``start`` (only time_weighted_avg needs it)."""
    inside = sorted((p for p in points if start <= p.ts < end), key=lambda p: (p.ts, p.order))
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if aggregation == "count":
            return Decimal(len(inside))
        if aggregation == "sum":
            return sum((p.value or Decimal(0) for p in inside), Decimal(0))
        if aggregation == "max":
            values = [p.value for p in inside if p.value is not None]
            return max(values) if values else Decimal(0)
        if aggregation == "unique_count":
            return Decimal(len({p.unique for p in inside if p.unique is not None}))
        if aggregation == "latest":
            return (inside[-1].value or Decimal(0)) if inside else Decimal(0)
        return time_weighted_avg(inside, start, end, before)


def time_weighted_avg(
    points: Sequence[Point], start: datetime, end: datetime, before: Point | None
) -> Decimal:
    """A gauge's average over [start, end): each value holds until the next event; before
    the first known value the gauge reads 0. Exact (microsecond resolution)."""
    total_us = _us(end - start)
    if total_us <= 0:
        return Decimal(0)
    current = (before.value or Decimal(0)) if before is not None else Decimal(0)
    cursor = start
    area = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        for p in sorted(points, key=lambda p: (p.ts, p.order)):
            if p.ts < start or p.ts >= end:
                continue
            area += current * _us(p.ts - cursor)
            current, cursor = p.value or Decimal(0), p.ts
        area += current * _us(end - cursor)
        return area / total_us


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def hour_floor(ts: datetime) -> datetime:
    """The UTC hour ``ts`` falls in (rollup buckets are UTC hours)."""
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The span of whole UTC hours inside [start, end), or None if there is none."""
    first = hour_floor(start)
    if first < start:
        first += timedelta(hours=1)
    last = hour_floor(end)
    return (first, last) if first < last else None
