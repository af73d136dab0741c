"""Proration by exact seconds: fractions, unrounded amounts, plan changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.core.money import round_minor
from kassa.subscriptions.rules import (
    Interval,
    change_proration,
    period_at,
    prorate,
    proration_fraction,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# --- the landlord ----------------------------------------------------------------------------


def test_landlord_room_change_mid_month() -> None:
    # A renter pays 600.00 EUR a month for a room, billed monthly from 1 January in
    # Europe/Berlin. On 12 April 2025 at local midnight they move to an 800.00 EUR room.
    anchor = datetime(2025, 1, 1, tzinfo=BERLIN)
    moved = datetime(2025, 4, 12, tzinfo=BERLIN)
    start, end, n = period_at(anchor, Interval("month"), "Europe/Berlin", moved)
    # April is a 30-day month with no DST change (that was 30 March):
    #   period  1 Apr 00:00 CEST → 1 May 00:00 CEST = 30 × 86 400 s = 2 592 000 s
    #   unused 12 Apr 00:00 CEST → 1 May 00:00 CEST = 19 × 86 400 s = 1 641 600 s → 19/30
    assert (start, end, n) == (utc(2025, 3, 31, 22), utc(2025, 4, 30, 22), 3)
    assert proration_fraction(start, end, moved, end) == Fraction(19, 30)
    # credit = −60 000 × 19/30 = −1 140 000/30 = −38 000           (exact)
    # charge =  80 000 × 19/30 =  1 520 000/30 =  50 666.666… → 50 667 (half-up)
    assert change_proration(60000, 80000, start, end, moved) == (-38000, 50667)
    # The old room's used part (1–11 April, 11/30) is what the April invoice already covered
    # beyond the credit: 60 000 − 38 000 = 22 000 = 60 000 × 11/30.
    assert prorate(60000, start, end, start, moved) == Decimal(22000)


def test_room_change_in_a_month_with_a_dst_change_is_by_seconds_not_days() -> None:
    # The same move in New York in November 2025: DST ends on 2 November, so the 30-day period
    # 1 Nov 00:00 EDT → 1 Dec 00:00 EST lasts 721 hours. Unused: 12 Nov → 1 Dec, all EST,
    # 19 × 24 = 456 hours.
    anchor = datetime(2025, 1, 1, tzinfo=NEW_YORK)
    moved = datetime(2025, 11, 12, tzinfo=NEW_YORK)
    start, end, _ = period_at(anchor, Interval("month"), "America/New_York", moved)
    assert end - start == timedelta(hours=721)
    assert proration_fraction(start, end, moved, end) == Fraction(456, 721)
    # credit = −60 000 × 456/721 = −27 360 000/721 = −37 947.295… → −37 947
    # charge =  80 000 × 456/721 =  36 480 000/721 =  50 596.393… →  50 596
    assert change_proration(60000, 80000, start, end, moved) == (-37947, 50596)


# --- fractions --------------------------------------------------------------------------------


def test_fraction_counts_elapsed_time_even_when_inputs_share_a_zone() -> None:
    # Subtracting two datetimes with the same ZoneInfo counts wall-clock time (24 h here);
    # the rules convert to UTC first, so Berlin's 31 March 2024 lasts 23 hours.
    day_start = datetime(2024, 3, 31, tzinfo=BERLIN)
    day_end = datetime(2024, 4, 1, tzinfo=BERLIN)
    noon = datetime(2024, 3, 31, 12, tzinfo=BERLIN)
    assert proration_fraction(day_start, day_end, noon, day_end) == Fraction(12, 23)
    assert proration_fraction(day_start, day_end, day_start, noon) == Fraction(11, 23)


def test_fraction_is_exact_to_the_microsecond() -> None:
    start = utc(2024, 1, 1)
    end = start + timedelta(seconds=1)
    tick = start + timedelta(microseconds=1)
    assert proration_fraction(start, end, start, tick) == Fraction(1, 1_000_000)
    year_end = utc(2025, 1, 1)
    assert proration_fraction(start, year_end, start, tick) == Fraction(1, 366 * 86_400 * 10**6)


def test_fraction_clamps_to_the_period() -> None:
    start, end = utc(2024, 6, 1), utc(2024, 7, 1)
    assert proration_fraction(start, end, utc(2024, 5, 1), utc(2024, 8, 1)) == 1
    assert proration_fraction(start, end, utc(2024, 5, 1), utc(2024, 6, 16)) == Fraction(1, 2)
    assert proration_fraction(start, end, utc(2024, 7, 1), utc(2024, 8, 1)) == 0
    assert proration_fraction(start, end, utc(2024, 5, 1), utc(2024, 5, 2)) == 0
    assert proration_fraction(start, end, utc(2024, 6, 20), utc(2024, 6, 10)) == 0


def test_fraction_rejects_bad_periods_and_naive_datetimes() -> None:
    start = utc(2024, 6, 1)
    with pytest.raises(ValueError, match="after period_start"):
        proration_fraction(start, start, start, start)
    with pytest.raises(ValueError, match="timezone-aware"):
        proration_fraction(start, utc(2024, 7, 1), datetime(2024, 6, 2), start)  # noqa: DTZ001


# --- amounts ----------------------------------------------------------------------------------


def test_prorate_is_unrounded_and_exact_when_the_quotient_is() -> None:
    start = utc(2024, 1, 1)
    end = start + timedelta(seconds=3)
    third = prorate(100, start, end, start, start + timedelta(seconds=1))
    with localcontext() as ctx:
        ctx.prec = 60
        assert third == Decimal(100) / Decimal(3)
    assert round_minor(third) == 33
    assert prorate(100, start, end, start, start + timedelta(seconds=1.5)) == Decimal(50)
    assert prorate(-999, start, end, start, end) == Decimal(-999)  # discounts prorate too
    # Half a minor unit rounds up, once, at the caller.
    two = start + timedelta(seconds=2)
    assert prorate(1, start, two, start, start + timedelta(seconds=1)) == Decimal("0.5")
    assert round_minor(prorate(1, start, two, start, start + timedelta(seconds=1))) == 1


def test_change_at_period_edges_and_outside() -> None:
    start, end = utc(2024, 2, 1), utc(2024, 3, 1)
    assert change_proration(2900, 4900, start, end, start) == (-2900, 4900)
    assert change_proration(2900, 4900, start, end, end) == (0, 0)
    with pytest.raises(ValueError, match="within the period"):
        change_proration(2900, 4900, start, end, end + timedelta(microseconds=1))
    with pytest.raises(ValueError, match="within the period"):
        change_proration(2900, 4900, start, end, start - timedelta(microseconds=1))


def test_change_rounds_half_up_each_side() -> None:
    start = utc(2024, 1, 1)
    end = start + timedelta(seconds=4)
    # 3/4 of 10 = 7.5 → 8; 3/4 of 2 = 1.5 → 2; credit is −8, not −7.
    assert change_proration(10, 2, start, end, start + timedelta(seconds=1)) == (-8, 2)


# --- properties -------------------------------------------------------------------------------

fees = st.integers(min_value=0, max_value=10**12)
instants = st.datetimes(
    min_value=datetime(1980, 1, 1),  # noqa: DTZ001
    max_value=datetime(2080, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
lengths = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400))
shares = st.fractions(min_value=0, max_value=1)


def inside(start: datetime, length: timedelta, share: Fraction) -> datetime:
    micros = length // timedelta(microseconds=1)
    return start + timedelta(microseconds=int(micros * share))


@given(fees, instants, lengths, shares)
def test_unused_credit_plus_used_charge_is_the_full_fee(
    fee: int, start: datetime, length: timedelta, share: Fraction
) -> None:
    end = start + length
    at = inside(start, length, share)
    credit, charge = change_proration(fee, fee, start, end, at)
    used = round_minor(prorate(fee, start, end, start, at))
    assert abs(used - credit - fee) <= 1
    assert credit == -charge  # the same fee on both sides cancels exactly
    assert credit <= 0 <= charge


@given(fees, fees, instants, lengths, shares)
def test_change_credits_and_charges_within_bounds(
    old: int, new: int, start: datetime, length: timedelta, share: Fraction
) -> None:
    end = start + length
    credit, charge = change_proration(old, new, start, end, inside(start, length, share))
    assert -old <= credit <= 0 <= charge <= new
    assert change_proration(old, new, start, end, start) == (-old, new)
    assert change_proration(old, new, start, end, end) == (0, 0)


@given(fees, instants, lengths, instants, instants)
def test_proration_is_never_negative_nor_above_the_full_amount(
    fee: int, start: datetime, length: timedelta, a: datetime, b: datetime
) -> None:
    end = start + length
    fraction = proration_fraction(start, end, a, b)
    assert 0 <= fraction <= 1
    assert 0 <= prorate(fee, start, end, a, b) <= fee
    assert 0 <= round_minor(prorate(fee, start, end, a, b)) <= fee


@given(instants, lengths, instants, instants, instants)
def test_fraction_is_monotonic_in_end(
    start: datetime, length: timedelta, a: datetime, b: datetime, c: datetime
) -> None:
    end = start + length
    low, high = sorted((b, c))
    assert proration_fraction(start, end, a, low) <= proration_fraction(start, end, a, high)


@given(instants, lengths, shares, shares)
def test_fractions_add_up_over_adjacent_spans(
    start: datetime, length: timedelta, s1: Fraction, s2: Fraction
) -> None:
    end = start + length
    mid1, mid2 = sorted((inside(start, length, s1), inside(start, length, s2)))
    parts = [
        proration_fraction(start, end, start, mid1),
        proration_fraction(start, end, mid1, mid2),
        proration_fraction(start, end, mid2, end),
    ]
    assert sum(parts) == 1
