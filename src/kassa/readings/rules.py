"""Meter readings → usage events: pure, exact, strictly typed (see docs/readings.md).

A reading is the cumulative value of a physical meter's register (kWh, m³) at an instant.
Consumption is the difference of two consecutive readings of the *effective series*:

* At one instant an ``actual`` reading beats a ``manual`` one, which beats an ``estimated`` one.
* Estimates are provisional: the next non-estimated reading drops every estimate between the
  previous kept reading and itself ("trues them up"); the first reading of a series and a
  meter replacement are always kept, and estimates after the last actual reading stay.
* A register with ``digits`` wraps from ``10**digits - 1`` to 0; a flagged ``rollover`` adds
  the wrap, at most once. A ``replacement`` counts from the new meter's ``start_value``.
  A lower value without a flag is rejected (``reading_decreased``), never made negative.

Consumption is spread over UTC-aligned buckets in proportion to the time each covers
(largest remainder, parts sum exactly to the total) and becomes usage events whose ids are
derived from their inputs, so ingesting the same readings twice is a no-op and any change to
the readings of a pair gives new ids. Decimal only; every datetime returned is in UTC.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from itertools import pairwise
from typing import Literal, get_args

Quality = Literal["actual", "estimated", "manual"]
QUALITIES: tuple[str, ...] = get_args(Quality)
# Lower wins at one instant: a meter's own (or a meter reader's) value beats one typed in by
# hand, which beats a guess.
_RANK = {"actual": 0, "manual": 1, "estimated": 2}

MAX_DIGITS = 15  # readings are below 10^15 (the bounds of usage values, docs/limits.md)
MAX_DECIMALS = 12
MAX_BUCKETS = 1_000_000  # e.g. a year of 1-minute buckets is 527 040: plenty, but bounded
EVENT_ID_PREFIX = "rd_"
_ID_HEX_CHARS = 32  # 128 bits of sha256: "rd_" + 32 = 35 characters
_ID_SCHEME = "kassa.readings.v1"  # part of every hashed id: changing it changes every id
_PRECISION = 60
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReadingError(ValueError):
    """A reading that cannot be accepted; ``code`` is stable, ``field`` names the input."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code = code
        self.field = field
        self.message = message


@contextmanager
def _exact() -> Iterator[None]:
    """Decimal arithmetic that raises rather than round (every operand is bounded)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        ctx.traps[Inexact] = True
        yield


def _canon(value: Decimal) -> str:
    """One spelling per number ("150.0" and "150" → "150"), for hashing."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return "0" if value == 0 else format(value.normalize(), "f")


def _on_grid(value: Decimal, decimals: int) -> bool:
    """``value`` has no more than ``decimals`` places (trailing zeros allowed: "1.50")."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        try:
            return value == value.quantize(Decimal(1).scaleb(-decimals))
        except InvalidOperation:  # more than _PRECISION digits: too large to be a reading
            return False


def _utc(field: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware")
    return value.astimezone(UTC)


def _non_negative(field: str, value: object) -> Decimal:
    if not isinstance(value, Decimal):
        raise ReadingError("reading_invalid", field, "must be a Decimal (never a float)")
    if not value.is_finite():
        raise ReadingError("reading_invalid", field, "must be a finite number")
    if value < 0:
        raise ReadingError("reading_invalid", field, f"{value} is negative")
    return value.copy_abs()  # turns -0 into 0


@dataclass(frozen=True, slots=True)
class Reading:
    """A register value at an instant. ``start_value`` only with ``replacement``: the new
    meter's value when it was installed (consumption counts from it)."""

    read_at: datetime
    value: Decimal
    quality: Quality
    rollover: bool = False
    replacement: bool = False
    start_value: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.read_at.tzinfo is None or self.read_at.utcoffset() is None:
            raise ReadingError("reading_invalid", "read_at", "must be timezone-aware")
        object.__setattr__(self, "value", _non_negative("reading", self.value))
        object.__setattr__(self, "start_value", _non_negative("start_value", self.start_value))
        if self.quality not in QUALITIES:
            raise ReadingError("reading_invalid", "quality", f"must be one of {QUALITIES}")
        if self.rollover and self.replacement:
            raise ReadingError(
                "reading_invalid", "replacement", "a reading is a rollover or a replacement"
            )
        if not self.replacement and self.start_value != 0:
            raise ReadingError(
                "reading_invalid", "start_value", "only a replacement reading has a start_value"
            )
        if self.value < self.start_value:
            raise ReadingError(
                "reading_decreased",
                "reading",
                f"{self.value} is lower than the new meter's start_value {self.start_value}",
            )

    @property
    def at(self) -> datetime:
        """``read_at`` in UTC."""
        return self.read_at.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Register:
    """A meter's register: ``digits`` integer digits (wraps from ``10**digits - 1`` to 0;
    ``None`` never wraps) and ``decimals`` places shown."""

    digits: int | None = None
    decimals: int = 0

    def __post_init__(self) -> None:
        if self.digits is not None and (
            isinstance(self.digits, bool)
            or not isinstance(self.digits, int)
            or not 1 <= self.digits <= MAX_DIGITS
        ):
            raise ValueError(f"register digits must be an integer 1..{MAX_DIGITS} or None")
        if (
            isinstance(self.decimals, bool)
            or not isinstance(self.decimals, int)
            or not 0 <= self.decimals <= MAX_DECIMALS
        ):
            raise ValueError(f"register decimals must be an integer 0..{MAX_DECIMALS}")

    @property
    def wrap(self) -> Decimal | None:
        """The value the register would show after its largest one (shown as 0)."""
        return None if self.digits is None else Decimal(1).scaleb(self.digits)

    @property
    def quantum(self) -> Decimal:
        """The smallest step the register shows (``Decimal("0.1")`` for one decimal)."""
        return Decimal(1).scaleb(-self.decimals)

    def validate(self, value: Decimal, field: str = "reading") -> None:
        """Raise ``reading_out_of_range`` unless the register can show ``value``."""
        if not _on_grid(value, self.decimals):
            raise ReadingError(
                "reading_out_of_range",
                field,
                f"{value} has more than the register's {self.decimals} decimal places",
            )
        wrap = self.wrap
        if wrap is not None and value >= wrap:
            raise ReadingError(
                "reading_out_of_range",
                field,
                f"{value} does not fit a register of {self.digits} digits (it wraps at {wrap})",
            )


def consumption(previous: Reading, current: Reading, register: Register) -> Decimal:
    """What the meter measured between two consecutive readings, never negative.

    * normally ``current - previous`` (lower without a flag: ``reading_decreased``);
    * ``rollover``: ``(wrap - previous) + current``, one wrap only. A rollover whose value is
      not below the previous one would be a full turn or more, which no reading can tell
      apart from several turns (``rollover_implausible``); a register without ``digits``
      never wraps (``rollover_unsupported``);
    * ``replacement``: ``current - start_value`` of the new meter. Whatever the old meter
      measured after its last reading is unknown: submit its final reading before replacing.
    """
    register.validate(previous.value)
    register.validate(current.value)
    register.validate(current.start_value, "start_value")
    if current.at <= previous.at:
        raise ReadingError(
            "reading_not_after_previous",
            "read_at",
            f"{current.at.isoformat()} is not after the previous reading's"
            f" {previous.at.isoformat()}",
        )
    with _exact():
        if current.replacement:
            used = current.value - current.start_value
        elif current.rollover:
            wrap = register.wrap
            if wrap is None:
                raise ReadingError(
                    "rollover_unsupported",
                    "rollover",
                    "the register has no digit count, so it never wraps",
                )
            if current.value >= previous.value:
                raise ReadingError(
                    "rollover_implausible",
                    "reading",
                    f"a rollover from {previous.value} to {current.value} would be a full turn"
                    " of the register or more, which cannot be measured",
                )
            used = wrap - previous.value + current.value
        elif current.value < previous.value:
            raise ReadingError(
                "reading_decreased",
                "reading",
                f"{current.value} is lower than the previous reading {previous.value};"
                " flag a rollover or a meter replacement",
            )
        else:
            used = current.value - previous.value
        return used.quantize(register.quantum)


def _content(reading: Reading) -> tuple[str, str, bool, bool, str]:
    return (
        reading.quality,
        _canon(reading.value),
        reading.rollover,
        reading.replacement,
        _canon(reading.start_value),
    )


def _choose(at: datetime, group: list[Reading]) -> Reading:
    """The reading that stands for instant ``at``: best quality, identical duplicates merged."""
    best = min(_RANK[r.quality] for r in group)
    top = [r for r in group if _RANK[r.quality] == best]
    if len({_content(r) for r in top}) > 1:
        raise ReadingError(
            "reading_conflict",
            "read_at",
            f"two different {top[0].quality} readings at {at.isoformat()}",
        )
    chosen = min(top, key=lambda r: (str(r.value), str(r.start_value)))
    return replace(chosen, read_at=at)


def effective_series(readings: Sequence[Reading]) -> list[Reading]:
    """The readings consumption is computed from, oldest first, ``read_at`` in UTC.

    The result does not depend on the order of ``readings``. Per instant the best quality
    wins (``actual`` > ``manual`` > ``estimated``); two different readings of the best quality
    at one instant raise ``reading_conflict``. A non-estimated reading drops the estimates
    since the previous kept reading; when one of those carried the ``rollover`` flag and the
    new reading is below the previous kept one, the new reading inherits the flag. The first
    reading and every replacement are kept, and so are the estimates before a replacement
    and after the last non-estimated reading: nothing trues those up.
    """
    groups: dict[datetime, list[Reading]] = {}
    for reading in readings:
        groups.setdefault(reading.at, []).append(reading)
    kept: list[Reading] = []
    provisional: list[Reading] = []  # estimates since the last kept reading
    for at in sorted(groups):
        reading = _choose(at, groups[at])
        if not kept or reading.replacement:
            kept.extend(provisional)  # nothing trues these up: they stay
        elif reading.quality == "estimated":
            provisional.append(reading)
            continue
        elif (
            any(e.rollover for e in provisional)
            and not reading.rollover
            and reading.value < kept[-1].value
        ):
            reading = replace(reading, rollover=True)
        provisional = []
        kept.append(reading)
    kept.extend(provisional)
    return kept


def _largest_remainder(units: int, weights: list[int]) -> list[int]:
    """``units`` (≥ 0) split by positive integer weights, exactly, like core.money.allocate:
    floors of the exact shares, leftovers one each by largest remainder, ties earliest first."""
    whole = sum(weights)
    shares = [divmod(units * w, whole) for w in weights]
    parts = [q for q, _ in shares]
    order = sorted(range(len(weights)), key=lambda i: (-shares[i][1], i))
    for i in order[: units - sum(parts)]:
        parts[i] += 1
    return parts


def spread(
    total: Decimal, start: datetime, end: datetime, interval: timedelta, decimals: int
) -> list[tuple[datetime, datetime, Decimal]]:
    """``total`` over ``[start, end)`` cut at UTC multiples of ``interval`` since the Unix
    epoch, in proportion to the microseconds each bucket covers.

    Returns ``(period_start, period_end, part)`` per bucket touched, oldest first; the
    periods are the covered parts of the buckets, so they tile ``[start, end)`` exactly.
    Every part has exactly ``decimals`` places, is within one quantum of its exact share and
    the parts sum to ``total`` (a zero total gives zero parts). A negative total spreads
    like its magnitude, negated.
    """
    if not isinstance(total, Decimal) or not total.is_finite():
        raise ValueError("total must be a finite Decimal")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError("decimals must be a non-negative integer")
    if not _on_grid(total, decimals):
        raise ValueError(f"total {total} has more than {decimals} decimal places")
    lo, hi = _utc("start", start), _utc("end", end)
    if hi <= lo:
        raise ValueError("end must be after start")
    step = interval // _MICROSECOND
    if step <= 0:
        raise ValueError("interval must be positive")
    first_us, end_us = (lo - _EPOCH) // _MICROSECOND, (hi - _EPOCH) // _MICROSECOND
    first_bucket, last_bucket = first_us // step, (end_us - 1) // step
    if last_bucket - first_bucket + 1 > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} buckets: use a longer interval")
    bounds = [
        (max(k * step, first_us), min((k + 1) * step, end_us))
        for k in range(first_bucket, last_bucket + 1)
    ]
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        units = int(total.scaleb(decimals))
    parts = _largest_remainder(abs(units), [b - a for a, b in bounds])
    sign = -1 if units < 0 else 1
    return [
        (
            _EPOCH + a * _MICROSECOND,
            _EPOCH + b * _MICROSECOND,
            Decimal(sign * part).scaleb(-decimals),
        )
        for (a, b), part in zip(bounds, parts, strict=True)
    ]


def derived_event_id(
    meter_point: str, start: datetime, end: datetime, bucket_start: datetime, revision: str = ""
) -> str:
    """``"rd_"`` + 32 hex of sha256 over the canonical inputs: the same arguments give the same
    id on every run and machine (instants compared in UTC, whatever their tzinfo)."""
    if not meter_point:
        raise ValueError("meter_point must not be empty")
    canonical = json.dumps(
        [
            _ID_SCHEME,
            meter_point,
            _utc("start", start).isoformat(timespec="microseconds"),
            _utc("end", end).isoformat(timespec="microseconds"),
            _utc("bucket_start", bucket_start).isoformat(timespec="microseconds"),
            revision,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return EVENT_ID_PREFIX + digest[:_ID_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class DerivedEvent:
    """A usage event derived from a pair of readings. ``timestamp`` is the last microsecond of
    ``[period_start, period_end)``; ``estimated`` when either reading of the pair is."""

    event_id: str
    timestamp: datetime
    value: Decimal
    period_start: datetime
    period_end: datetime
    estimated: bool = False


def _revision(
    previous: Reading, current: Reading, register: Register, interval: timedelta | None
) -> str:
    """Everything a pair's events depend on besides the instants (which the id has anyway)."""
    step = "none" if interval is None else str(interval // _MICROSECOND)
    return json.dumps(
        [register.digits, register.decimals, step, _content(previous), _content(current)],
        separators=(",", ":"),
    )


def plan_events(
    meter_point: str, readings: Sequence[Reading], register: Register, interval: timedelta | None
) -> list[DerivedEvent]:
    """The usage events that ``readings`` of ``meter_point`` stand for, oldest first.

    Consumption of each consecutive pair of the effective series, spread over ``interval``
    buckets when given, else one event for the whole pair. Zero parts give no event. Ids are
    derived from the meter point, the pair's instants, the bucket and a revision fingerprint
    of both readings, the register and the interval: re-planning the same readings gives the
    same ids; superseded pairs give ids that are no longer planned (void those).
    """
    if not meter_point:
        raise ValueError("meter_point must not be empty")
    series = effective_series(readings)
    for reading in series:
        register.validate(reading.value)
    events: list[DerivedEvent] = []
    for previous, current in pairwise(series):
        used = consumption(previous, current, register)
        revision = _revision(previous, current, register, interval)
        estimated = "estimated" in (previous.quality, current.quality)
        if interval is None:
            parts = [(previous.at, current.at, used)]
        else:
            parts = spread(used, previous.at, current.at, interval, register.decimals)
        events.extend(
            DerivedEvent(
                event_id=derived_event_id(meter_point, previous.at, current.at, lo, revision),
                timestamp=hi - _MICROSECOND,
                value=value,
                period_start=lo,
                period_end=hi,
                estimated=estimated,
            )
            for lo, hi, value in parts
            if value != 0
        )
    return events
