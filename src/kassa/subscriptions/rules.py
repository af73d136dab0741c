"""Billing periods and proration: pure, exact, time-zone aware (see docs/periods.md).

Periods are calendar periods in the local wall time of an IANA zone (the organization's or the
customer's), computed from the anchor every time, never by chaining one period onto the last:

* ``n``-th boundary = anchor's local wall time + ``n × count`` units; months and years clamp to
  the last day of the target month (Jan 31 → Feb 28/29 → Mar 31 → Apr 30 …).
* The anchor is an instant: only its position on the UTC time line matters, not the tzinfo it
  carries. Its wall time in ``tz`` is what repeats.
* A wall time that does not exist (spring-forward gap) moves forward by the length of the gap
  (Berlin 02:30 → 03:30 CEST); an ambiguous one (fall-back) is its first occurrence (fold=0).
* Results are aware datetimes in UTC.

Proration is by exact elapsed time (microseconds) between instants, as a ``Fraction``; money
stays unrounded ``Decimal`` minor units until the caller rounds once per invoice line with
:func:`kassa.core.money.round_minor`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kassa.core.money import round_minor

IntervalUnit = Literal["day", "week", "month", "year"]
UNITS: tuple[str, ...] = get_args(IntervalUnit)

# Digits kept when turning an exact Fraction into Decimal minor units; the same as core.money.
# Exact quotients stay exact; others sit ~1e-14 or more away from any half-unit for amounts up
# to 10**15 over periods of up to a century, so rounding them later cannot flip.
_PRECISION = 60
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Interval:
    """A recurring billing interval: ``count`` × ``unit`` (``Interval("month", 3)`` = quarter)."""

    unit: IntervalUnit
    count: int = 1

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"interval unit must be one of {', '.join(UNITS)}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError("interval count must be a positive integer")


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _to_utc(name: str, value: datetime) -> datetime:
    _require_aware(name, value)
    return value.astimezone(UTC)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall time of an aware instant in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall time → the UTC instant, per PEP 495 fold=0.

    fold=0 uses the offset in force *before* a transition: an ambiguous time gets its first
    occurrence, and a time in a gap lands ``gap`` later on the far side (02:30 → 03:30 CEST).
    """
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _add_months(wall: datetime, months: int) -> datetime:
    year, month0 = divmod(wall.month - 1 + months, 12)
    year += wall.year
    if not 1 <= year <= 9999:
        raise ValueError("period boundary out of range")
    day = min(wall.day, calendar.monthrange(year, month0 + 1)[1])
    return wall.replace(year=year, month=month0 + 1, day=day)


def _shift(wall: datetime, interval: Interval, n: int) -> datetime:
    """``wall`` moved by ``n`` intervals on the calendar (naive wall-clock arithmetic)."""
    steps = n * interval.count
    try:
        if interval.unit == "day":
            return wall + timedelta(days=steps)
        if interval.unit == "week":
            return wall + timedelta(weeks=steps)
        if interval.unit == "month":
            return _add_months(wall, steps)
        return _add_months(wall, 12 * steps)
    except OverflowError:
        raise ValueError("period boundary out of range") from None


def _boundary(
    anchor_utc: datetime, anchor_wall: datetime, interval: Interval, n: int, zone: ZoneInfo
) -> datetime:
    if n == 0:
        # The anchor itself, even when its wall time is the second of two (fold=1).
        return anchor_utc
    try:
        return _resolve(_shift(anchor_wall, interval, n), zone)
    except OverflowError:
        raise ValueError("period boundary out of range") from None


def period_boundary(anchor: datetime, interval: Interval, n: int, tz: str) -> datetime:
    """The ``n``-th period boundary after ``anchor`` (``n == 0`` is the anchor), in UTC.

    Computed in the local wall time of IANA zone ``tz`` straight from the anchor: a monthly
    anchor on Jan 31 gives Feb 28 (29 in leap years), Mar 31, Apr 30 …; local midnight stays
    local midnight across DST changes, so a "day" may last 23 or 25 hours. A negative ``n``
    counts back by the same rule (``-1`` starts the full period that ends at the anchor).
    """
    zone = _zone(tz)
    anchor_utc = _to_utc("anchor", anchor)
    return _boundary(anchor_utc, _wall(anchor_utc, zone), interval, n, zone)


def _estimate_index(anchor_wall: datetime, at_wall: datetime, interval: Interval) -> int:
    """A guess of the period index from wall times; off by at most a step or two."""
    if interval.unit in ("day", "week"):
        step = timedelta(days=interval.count * (7 if interval.unit == "week" else 1))
        return (at_wall - anchor_wall) // step
    months = (at_wall.year - anchor_wall.year) * 12 + at_wall.month - anchor_wall.month
    return months // (interval.count * (12 if interval.unit == "year" else 1))


def period_at(
    anchor: datetime, interval: Interval, tz: str, at: datetime
) -> tuple[datetime, datetime, int]:
    """The period ``[start, end)`` that contains ``at``, and its index ``n``.

    ``start == period_boundary(anchor, interval, n, tz)`` and ``end`` is boundary ``n + 1``.
    The index is estimated from the calendar and then corrected by a few steps, so the cost
    does not grow with the number of periods since the anchor.
    """
    zone = _zone(tz)
    anchor_utc = _to_utc("anchor", anchor)
    at_utc = _to_utc("at", at)
    if at_utc < anchor_utc:
        raise ValueError("at must not be before the anchor")
    anchor_wall = _wall(anchor_utc, zone)
    cache: dict[int, datetime] = {}

    def boundary(k: int) -> datetime:
        if k not in cache:
            cache[k] = _boundary(anchor_utc, anchor_wall, interval, k, zone)
        return cache[k]

    n = max(0, _estimate_index(anchor_wall, _wall(at_utc, zone), interval))
    while n > 0 and boundary(n) > at_utc:
        n -= 1
    # ``<=`` also steps over a zero-length period, which only a zone that skipped a whole
    # interval of wall time can produce (docs/periods.md, "Known edges").
    while boundary(n + 1) <= at_utc:
        n += 1
    return boundary(n), boundary(n + 1), n


def trial_end(start: datetime, trial_days: int, tz: str) -> datetime:
    """``start`` plus ``trial_days`` calendar days in the local wall time of ``tz``, in UTC.

    A trial starting at 10:00 local ends at 10:00 local, whatever DST did in between.
    """
    if trial_days < 0:
        raise ValueError("trial_days must not be negative")
    if trial_days == 0:
        return _to_utc("start", start)
    return period_boundary(start, Interval("day", trial_days), 1, tz)


def _microseconds(delta: timedelta) -> int:
    return delta // _MICROSECOND


def proration_fraction(
    period_start: datetime, period_end: datetime, start: datetime, end: datetime
) -> Fraction:
    """The exact share of ``[period_start, period_end)`` covered by ``[start, end)``, in 0..1.

    Measured in elapsed microseconds between instants (all converted to UTC first: subtracting
    two datetimes that share a ZoneInfo would count wall-clock time instead).
    """
    p_start = _to_utc("period_start", period_start)
    p_end = _to_utc("period_end", period_end)
    if p_end <= p_start:
        raise ValueError("period_end must be after period_start")
    lo = max(_to_utc("start", start), p_start)
    hi = min(_to_utc("end", end), p_end)
    covered = max(0, _microseconds(hi - lo))
    return Fraction(covered, _microseconds(p_end - p_start))


def _times(amount: int, fraction: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return Decimal(amount * fraction.numerator) / Decimal(fraction.denominator)


def prorate(
    amount: int, period_start: datetime, period_end: datetime, start: datetime, end: datetime
) -> Decimal:
    """``amount`` (minor units, for the whole period) × the share covered by ``[start, end)``.

    Unrounded: the caller rounds once per invoice line with ``core.money.round_minor``.
    """
    return _times(amount, proration_fraction(period_start, period_end, start, end))


def change_proration(
    old_amount: int, new_amount: int, period_start: datetime, period_end: datetime, at: datetime
) -> tuple[int, int]:
    """``(credit, charge)`` for a change "now" at ``at`` inside ``[period_start, period_end]``.

    ``credit`` is minus the unused part of the old fee (``at`` → period end), ``charge`` the
    remaining part of the new fee over the same span; each rounded half-up to minor units.
    """
    at_utc = _to_utc("at", at)
    if not _to_utc("period_start", period_start) <= at_utc <= _to_utc("period_end", period_end):
        raise ValueError("at must lie within the period")
    remaining = proration_fraction(period_start, period_end, at_utc, period_end)
    return -round_minor(_times(old_amount, remaining)), round_minor(_times(new_amount, remaining))
