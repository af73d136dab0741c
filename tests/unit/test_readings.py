"""Meter readings: consumption, rollover, replacement, truing up estimates, spreading, ids."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kassa.readings.rules import (
    DerivedEvent,
    Quality,
    Reading,
    ReadingError,
    Register,
    consumption,
    derived_event_id,
    effective_series,
    plan_events,
    spread,
)

D = Decimal
FAST = settings(max_examples=150, deadline=None)
HOUR = timedelta(hours=1)
SIX = Register(digits=6)
BERLIN = ZoneInfo("Europe/Berlin")
ID_RE = re.compile(r"^rd_[0-9a-f]{32}$")


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC)


def actual(
    when: datetime,
    value: str,
    *,
    rollover: bool = False,
    replacement: bool = False,
    start_value: Decimal = Decimal(0),
) -> Reading:
    return Reading(when, D(value), "actual", rollover, replacement, start_value)


def estimated(
    when: datetime, value: str, *, rollover: bool = False, replacement: bool = False
) -> Reading:
    return Reading(when, D(value), "estimated", rollover, replacement)


def values(series: list[Reading]) -> list[tuple[datetime, str, str]]:
    return [(r.read_at, str(r.value), r.quality) for r in series]


# --- consumption -------------------------------------------------------------------------


def test_simple_consumption() -> None:
    assert consumption(actual(at(1), "100"), actual(at(2), "150"), Register()) == D(50)


def test_six_digit_rollover() -> None:
    previous, current = actual(at(1), "999990"), actual(at(2), "15", rollover=True)
    assert consumption(previous, current, SIX) == D(25)


def test_rollover_with_decimals() -> None:
    register = Register(digits=5, decimals=1)
    used = consumption(actual(at(1), "99999.9"), actual(at(2), "0.2", rollover=True), register)
    assert str(used) == "0.3"


def test_rollover_needs_digits() -> None:
    with pytest.raises(ReadingError) as err:
        consumption(actual(at(1), "999990"), actual(at(2), "15", rollover=True), Register())
    assert err.value.code == "rollover_unsupported"
    assert err.value.field == "rollover"


@pytest.mark.parametrize("value", ["999990", "999995"])
def test_rollover_of_a_full_turn_or_more_is_rejected(value: str) -> None:
    with pytest.raises(ReadingError) as err:
        consumption(actual(at(1), "999990"), actual(at(2), value, rollover=True), SIX)
    assert err.value.code == "rollover_implausible"


def test_replacement_counts_from_the_new_meters_start_value() -> None:
    previous = actual(at(1), "54321")
    current = actual(at(2), "30", replacement=True, start_value=D(5))
    assert consumption(previous, current, SIX) == D(25)
    fresh = actual(at(2), "30", replacement=True)
    assert consumption(previous, fresh, SIX) == D(30)


def test_replacement_below_its_start_value_is_rejected() -> None:
    with pytest.raises(ReadingError) as err:
        actual(at(2), "4", replacement=True, start_value=D(5))
    assert err.value.code == "reading_decreased"


def test_decreased_reading_without_flag_is_rejected() -> None:
    with pytest.raises(ReadingError) as err:
        consumption(actual(at(1), "999990"), actual(at(2), "15"), SIX)
    assert err.value.code == "reading_decreased"
    assert err.value.field == "reading"
    assert str(err.value).startswith("reading: 15 is lower than the previous reading 999990")


@pytest.mark.parametrize("when", [at(1), at(1) - HOUR])
def test_reading_not_after_previous_is_rejected(when: datetime) -> None:
    with pytest.raises(ReadingError) as err:
        consumption(actual(at(1), "100"), actual(when, "150"), Register())
    assert err.value.code == "reading_not_after_previous"
    assert str(err.value).startswith("read_at: ")


@pytest.mark.parametrize(
    ("register", "value"),
    [(SIX, "1000000"), (SIX, "0.5"), (Register(decimals=1), "1.25"), (Register(), "1E+61")],
)
def test_values_the_register_cannot_show_are_out_of_range(register: Register, value: str) -> None:
    with pytest.raises(ReadingError) as err:
        consumption(actual(at(1), "0"), actual(at(2), value), register)
    assert err.value.code == "reading_out_of_range"


def test_trailing_zeros_are_on_the_grid() -> None:
    used = consumption(actual(at(1), "1.50"), actual(at(2), "2.7"), Register(decimals=1))
    assert str(used) == "1.2"


def test_consumption_is_zero_for_an_unchanged_register() -> None:
    assert consumption(actual(at(1), "7"), actual(at(2), "7"), SIX) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"read_at": datetime(2024, 3, 1), "value": D(1)}, "read_at"),  # noqa: DTZ001
        ({"value": D(-1)}, "reading"),
        ({"value": 1.5}, "reading"),
        ({"value": D("NaN")}, "reading"),
        ({"quality": "guessed"}, "quality"),
        ({"rollover": True, "replacement": True}, "replacement"),
        ({"start_value": D(5)}, "start_value"),
    ],
)
def test_invalid_readings(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"read_at": at(1), "value": D(10), "quality": "actual"}
    with pytest.raises(ReadingError) as err:
        Reading(**{**base, **kwargs})
    assert (err.value.code, err.value.field) == ("reading_invalid", field)


def test_negative_zero_is_zero() -> None:
    assert str(actual(at(1), "-0").value) == "0"


@pytest.mark.parametrize("kwargs", [{"digits": 0}, {"digits": True}, {"decimals": -1}])
def test_invalid_registers(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="register"):
        Register(**kwargs)


# --- effective series --------------------------------------------------------------------


def test_actual_supersedes_estimate_at_the_same_instant() -> None:
    readings = [actual(at(1), "100"), estimated(at(2), "160"), actual(at(2), "150")]
    assert values(effective_series(readings)) == [
        (at(1), "100", "actual"),
        (at(2), "150", "actual"),
    ]


def test_quality_ranks_at_one_instant() -> None:
    manual = Reading(at(1), D(120), "manual")
    assert effective_series([estimated(at(1), "130"), manual])[0] == manual
    assert effective_series([manual, actual(at(1), "110")])[0].value == 110


def test_actual_trues_up_the_estimates_since_the_last_actual() -> None:
    readings = [
        actual(at(1), "100"),
        estimated(at(2), "160"),
        estimated(at(3), "220"),
        actual(at(4), "190"),
        estimated(at(5), "240"),
    ]
    assert values(effective_series(readings)) == [
        (at(1), "100", "actual"),
        (at(4), "190", "actual"),
        (at(5), "240", "estimated"),
    ]


def test_manual_trues_up_like_actual() -> None:
    readings = [actual(at(1), "100"), estimated(at(2), "160"), Reading(at(3), D(150), "manual")]
    assert [r.read_at for r in effective_series(readings)] == [at(1), at(3)]


def test_first_reading_is_kept_even_when_estimated() -> None:
    readings = [estimated(at(1), "100"), estimated(at(2), "130"), actual(at(3), "150")]
    assert [r.read_at for r in effective_series(readings)] == [at(1), at(3)]


def test_replacement_is_never_trued_up() -> None:
    replaced = estimated(at(3), "30", replacement=True)
    readings = [actual(at(1), "500"), estimated(at(2), "600"), replaced, actual(at(4), "45")]
    assert [r.read_at for r in effective_series(readings)] == [at(1), at(2), at(3), at(4)]


def test_rollover_of_a_dropped_estimate_carries_over() -> None:
    readings = [
        actual(at(1), "999000"),
        estimated(at(2), "999990"),
        estimated(at(3), "10", rollover=True),
        actual(at(4), "50"),
    ]
    series = effective_series(readings)
    assert [(str(r.value), r.rollover) for r in series] == [("999000", False), ("50", True)]
    assert consumption(series[0], series[1], SIX) == D(1050)


def test_a_wrong_rollover_estimate_does_not_carry_over() -> None:
    readings = [
        actual(at(1), "999000"),
        estimated(at(2), "10", rollover=True),
        actual(at(4), "999500"),
    ]
    series = effective_series(readings)
    assert series[-1].rollover is False
    assert consumption(series[0], series[1], SIX) == D(500)


def test_identical_duplicates_merge_and_order_does_not_matter() -> None:
    readings = [
        actual(at(1), "100"),
        Reading(at(1).astimezone(BERLIN), D("100.0"), "actual"),
        estimated(at(2), "130"),
        actual(at(3), "150"),
    ]
    expected = effective_series(readings)
    assert [r.read_at for r in expected] == [at(1), at(3)]
    assert all(r.read_at.tzinfo is UTC for r in expected)
    for seed in range(5):
        shuffled = readings[:]
        random.Random(seed).shuffle(shuffled)
        assert effective_series(shuffled) == expected


def test_two_different_actuals_at_one_instant_conflict() -> None:
    with pytest.raises(ReadingError) as err:
        effective_series([actual(at(1), "100"), actual(at(1), "101")])
    assert (err.value.code, err.value.field) == ("reading_conflict", "read_at")


# --- spread ------------------------------------------------------------------------------


def test_spread_uneven_coverage_sums_exactly() -> None:
    # 30 + 60 + 60 + 15 minutes: exact shares 1.82, 3.64, 3.64, 0.91 of 10.
    parts = spread(D(10), at(1, 0, 30), at(1, 3, 15), HOUR, 0)
    assert parts == [
        (at(1, 0, 30), at(1, 1), D(2)),
        (at(1, 1), at(1, 2), D(4)),
        (at(1, 2), at(1, 3), D(3)),
        (at(1, 3), at(1, 3, 15), D(1)),
    ]


def test_spread_with_decimals_keeps_the_places() -> None:
    parts = spread(D("1.000"), at(1), at(1, 3), HOUR, 3)
    assert [str(p) for _, _, p in parts] == ["0.334", "0.333", "0.333"]


def test_spread_buckets_are_utc_so_dst_does_not_matter() -> None:
    # Berlin's spring-forward day has 23 hours: 23 UTC buckets of equal share.
    start = datetime(2024, 3, 31, tzinfo=BERLIN)
    end = datetime(2024, 4, 1, tzinfo=BERLIN)
    parts = spread(D(23), start, end, HOUR, 0)
    assert len(parts) == 23
    assert {p for _, _, p in parts} == {D(1)}
    assert parts[0][0] == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert all(lo.tzinfo is UTC and hi - lo == HOUR for lo, hi, _ in parts)


def test_spread_aligns_to_utc_multiples_of_the_interval() -> None:
    parts = spread(D(4), at(1, 7, 10), at(1, 8, 10), timedelta(minutes=15), 0)
    assert [lo.minute for lo, _, _ in parts] == [10, 15, 30, 45, 0]
    assert [p for _, _, p in parts] == [D(0), D(1), D(1), D(1), D(1)]


def test_spread_of_zero_gives_zero_parts() -> None:
    assert [str(p) for _, _, p in spread(D(0), at(1), at(1, 2), HOUR, 2)] == ["0.00", "0.00"]


def test_spread_of_a_negative_total_mirrors_the_positive_one() -> None:
    positive = spread(D(10), at(1, 0, 30), at(1, 3, 15), HOUR, 0)
    negative = spread(D(-10), at(1, 0, 30), at(1, 3, 15), HOUR, 0)
    assert [-p for _, _, p in negative] == [p for _, _, p in positive]


@pytest.mark.parametrize(
    ("total", "start", "end", "interval", "decimals", "match"),
    [
        (D("1.5"), at(1), at(2), HOUR, 0, "decimal places"),
        (D(1), at(2), at(1), HOUR, 0, "after start"),
        (D(1), at(1), at(1), HOUR, 0, "after start"),
        (D(1), at(1), at(2), timedelta(0), 0, "positive"),
        (D(1), datetime(2024, 3, 1), at(2), HOUR, 0, "aware"),  # noqa: DTZ001
        (D(1), at(1), at(2), timedelta(microseconds=1), 0, "buckets"),
    ],
)
def test_spread_rejects(
    total: Decimal, start: datetime, end: datetime, interval: timedelta, decimals: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        spread(total, start, end, interval, decimals)


# --- derived ids and planned events ------------------------------------------------------


def test_derived_ids_are_stable_and_distinct() -> None:
    # Pinned: changing this breaks the idempotency of every meter point already ingested.
    assert derived_event_id("mp_1", at(1), at(1, 3), at(1)) == "rd_753bd2381012f65a3840395c0d93f7b9"
    berlin = derived_event_id(
        "mp_1", at(1).astimezone(BERLIN), at(1, 3).astimezone(BERLIN), at(1).astimezone(BERLIN)
    )
    assert berlin == "rd_753bd2381012f65a3840395c0d93f7b9"
    ids = {
        derived_event_id("mp_1", at(1), at(1, 3), at(1)),
        derived_event_id("mp_2", at(1), at(1, 3), at(1)),
        derived_event_id("mp_1", at(1, 1), at(1, 3), at(1, 1)),
        derived_event_id("mp_1", at(1), at(1, 2), at(1)),
        derived_event_id("mp_1", at(1), at(1, 3), at(1, 1)),
        derived_event_id("mp_1", at(1), at(1, 3), at(1), "r2"),
    }
    assert len(ids) == 6
    assert all(ID_RE.match(i) for i in ids)


def test_plan_without_interval_stamps_the_last_microsecond_of_the_pair() -> None:
    events = plan_events("mp_1", [actual(at(1), "100"), actual(at(2), "150")], SIX, None)
    assert events == [
        DerivedEvent(
            event_id=events[0].event_id,
            timestamp=at(2) - timedelta(microseconds=1),
            value=D(50),
            period_start=at(1),
            period_end=at(2),
            estimated=False,
        )
    ]


def test_plan_is_idempotent_and_spread_sums_to_the_consumption() -> None:
    readings = [actual(at(1, 0, 30), "999990"), actual(at(1, 3, 15), "15", rollover=True)]
    events = plan_events("mp_1", readings, SIX, HOUR)
    assert [e.value for e in events] == [D(5), D(9), D(9), D(2)]
    assert sum(e.value for e in events) == D(25)
    assert all(e.period_start <= e.timestamp < e.period_end for e in events)
    assert plan_events("mp_1", list(reversed(readings)), SIX, HOUR) == events
    assert len({e.event_id for e in events}) == 4


def test_estimated_then_actual_trues_up_with_new_ids() -> None:
    before = [actual(at(1), "100"), estimated(at(2), "160")]
    provisional = plan_events("mp_1", before, SIX, None)
    assert [(e.value, e.estimated) for e in provisional] == [(D(60), True)]

    later = plan_events("mp_1", [*before, actual(at(3), "190")], SIX, None)
    assert [(e.value, e.period_start, e.period_end, e.estimated) for e in later] == [
        (D(90), at(1), at(3), False)
    ]
    assert {e.event_id for e in provisional}.isdisjoint(e.event_id for e in later)

    # The same instant corrected: same period, new value, new id.
    corrected = plan_events("mp_1", [*before, actual(at(2), "150")], SIX, None)
    assert [(e.value, e.period_end) for e in corrected] == [(D(50), at(2))]
    assert corrected[0].event_id != provisional[0].event_id

    # Even an actual that confirms the estimate exactly gets a new id (estimated flag changes).
    confirmed = plan_events("mp_1", [*before, actual(at(2), "160")], SIX, None)
    assert confirmed[0].value == provisional[0].value
    assert confirmed[0].event_id != provisional[0].event_id


def test_plan_with_replacement() -> None:
    readings = [
        actual(at(1), "54000"),
        actual(at(2), "54321"),  # the old meter's final reading
        actual(at(3), "30", replacement=True, start_value=D(5)),
    ]
    assert [e.value for e in plan_events("mp_1", readings, SIX, None)] == [D(321), D(25)]


def test_plan_skips_zero_consumption_and_rejects_a_decrease() -> None:
    flat = [actual(at(1), "100"), actual(at(2), "100")]
    assert plan_events("mp_1", flat, SIX, HOUR) == []
    with pytest.raises(ReadingError, match="reading_decreased|lower"):
        plan_events("mp_1", [actual(at(1), "100"), actual(at(2), "99")], SIX, HOUR)


def test_plan_ids_change_with_the_interval() -> None:
    readings = [actual(at(1), "0"), actual(at(1, 2), "10")]
    hourly = plan_events("mp_1", readings, SIX, HOUR)
    two_hourly = plan_events("mp_1", readings, SIX, 2 * HOUR)
    assert hourly[0].period_start == two_hourly[0].period_start
    assert hourly[0].event_id != two_hourly[0].event_id


# --- properties --------------------------------------------------------------------------

BASE = datetime(2024, 1, 1, tzinfo=UTC)
instants = st.integers(min_value=-(10**12), max_value=10**12).map(
    lambda us: BASE + timedelta(microseconds=us)
)
intervals = st.sampled_from(
    [timedelta(minutes=15), HOUR, timedelta(hours=6), timedelta(days=1), timedelta(seconds=7)]
)


@st.composite
def spreads(draw: st.DrawFn) -> tuple[Decimal, datetime, datetime, timedelta, int]:
    interval = draw(intervals)
    start = draw(instants)
    length = draw(st.integers(min_value=1, max_value=200 * (interval // timedelta(microseconds=1))))
    decimals = draw(st.integers(min_value=0, max_value=6))
    total = D(draw(st.integers(min_value=0, max_value=10**15))).scaleb(-decimals)
    return total, start, start + timedelta(microseconds=length), interval, decimals


@FAST
@given(spreads())
@example((D(10), at(1, 0, 30), at(1, 3, 15), HOUR, 0))
@example((D(0), at(1), at(1, 0, 0) + timedelta(microseconds=1), HOUR, 3))
def test_spread_invariants(case: tuple[Decimal, datetime, datetime, timedelta, int]) -> None:
    total, start, end, interval, decimals = case
    parts = spread(total, start, end, interval, decimals)
    quantum = Fraction(1, 10**decimals)
    span = Fraction((end - start) // timedelta(microseconds=1))
    assert sum(p for _, _, p in parts) == total
    assert parts[0][0] == start and parts[-1][1] == end
    for (lo, hi, part), (next_lo, _, _) in zip(parts, [*parts[1:], (end, end, D(0))], strict=True):
        assert hi == next_lo and lo < hi
        assert part >= 0 and part.as_tuple().exponent == -decimals
        exact = Fraction(total) * Fraction((hi - lo) // timedelta(microseconds=1)) / span
        assert abs(Fraction(part) - exact) < quantum


readings_values = st.integers(min_value=0, max_value=999_999).map(D)


@FAST
@given(
    readings_values,
    readings_values,
    st.sampled_from(["none", "rollover", "replacement"]),
    readings_values,
    st.sampled_from([SIX, Register()]),
)
@example(D(999_990), D(15), "rollover", D(0), SIX)
def test_accepted_consumption_is_never_negative(
    previous: Decimal, current: Decimal, flag: str, start: Decimal, register: Register
) -> None:
    try:
        reading = Reading(
            at(2),
            current,
            "actual",
            rollover=flag == "rollover",
            replacement=flag == "replacement",
            start_value=start if flag == "replacement" else D(0),
        )
        used = consumption(actual(at(1), str(previous)), reading, register)
    except ReadingError:
        return
    assert used >= 0
    if flag == "none":
        assert used == current - previous
    if flag == "rollover":
        assert 0 < used < D(10**6)


@FAST
@given(st.lists(st.integers(min_value=0, max_value=10**4), min_size=1, max_size=8), st.randoms())
def test_planned_events_telescope_and_ignore_order(steps: list[int], rnd: random.Random) -> None:
    readings: list[Reading] = []
    value = 0
    for day, step in enumerate(steps, start=1):
        value += step
        quality: Quality = "estimated" if rnd.random() < 0.3 else "actual"
        readings.append(Reading(at(day, rnd.randrange(24)), D(value), quality))
    events = plan_events("mp_1", readings, Register(), timedelta(hours=6))
    series = effective_series(readings)
    assert sum((e.value for e in events), D(0)) == series[-1].value - series[0].value
    shuffled = readings[:]
    rnd.shuffle(shuffled)
    assert plan_events("mp_1", shuffled, Register(), timedelta(hours=6)) == events
