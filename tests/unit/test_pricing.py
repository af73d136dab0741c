"""Golden tables for the pricing models: every expected amount is computed by hand in the
comment next to it (minor units; ``→`` marks the single half-up rounding of the line)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from kassa.core.money import exponent
from kassa.pricing import (
    Charge,
    Line,
    Period,
    PlanPricing,
    PricingError,
    Usage,
    dump_properties,
    parse_charge,
    rate,
    rate_charge,
)

D = Decimal
PERIOD = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def amount(model: str, props: dict[str, Any], units: str, min_amount: int | None = None) -> int:
    return rate_charge(parse_charge("m", model, props, min_amount), Usage(D(units))).amount


def events_amount(props: dict[str, Any], values: list[int]) -> int:
    charge = parse_charge("m", "percentage", props, None)
    return rate_charge(charge, Usage.from_events(values)).amount


def test_currencies_used_below() -> None:
    # The tables hold minor units, so the same code serves 0, 2 and 3-decimal currencies.
    assert (exponent("jpy"), exponent("eur"), exponent("bhd"), exponent("kwd")) == (0, 2, 3, 3)


# --- per_unit ---------------------------------------------------------------------------

PER_UNIT = [
    # currency, unit_amount, units, expected
    ("eur", "0.25", "0", 0),  # 0 × 0.25 = 0
    ("eur", "0.25", "1", 0),  # 0.25 → 0
    ("eur", "0.25", "2", 1),  # 0.50 → 1 (half-up)
    ("eur", "0.25", "3", 1),  # 0.75 → 1
    ("eur", "0.25", "10", 3),  # 2.50 → 3
    ("eur", "0.25", "1000", 250),  # 250
    ("eur", "0.0025", "1000000", 2500),  # a quarter of a hundredth cent per API call
    ("eur", "0.000000000001", "1000000000000", 1),  # 12 decimals × 10^12 = 1
    ("eur", "12.345", "3", 37),  # 37.035 → 37
    ("eur", "1.5", "2.5", 4),  # fractional units: 3.75 → 4
    ("eur", 199, "3", 597),  # an integer unit_amount is accepted: 199 × 3
    ("jpy", "3", "7", 21),  # 21 yen
    ("jpy", "0.5", "3", 2),  # 1.5 yen → 2
    ("jpy", "0.5", "5", 3),  # 2.5 yen → 3
    ("bhd", "1.2345", "4", 5),  # 4.938 fils → 5
    ("bhd", "125", "2", 250),  # 0.250 BHD = 250 fils
    ("kwd", "0.5", "1", 1),  # 0.5 fils → 1
]


@pytest.mark.parametrize(("currency", "unit", "units", "expected"), PER_UNIT)
def test_per_unit(currency: str, unit: str | int, units: str, expected: int) -> None:
    assert exponent(currency) in (0, 2, 3)
    assert amount("per_unit", {"unit_amount": unit}, units) == expected


def test_per_unit_line_shows_quantity_and_price() -> None:
    result = rate_charge(parse_charge("m", "per_unit", {"unit_amount": "0.25"}, None), Usage(D(10)))
    assert (result.quantity, result.unit_amount, result.exact_amount) == (
        D(10),
        D("0.25"),
        D("2.5"),
    )
    assert result.tiers == ()


# --- graduated --------------------------------------------------------------------------

EUR_TIERS = [
    {"up_to": 100, "unit_amount": "10"},
    {"up_to": 1000, "unit_amount": "5", "flat_amount": 500},
    {"up_to": None, "unit_amount": "2.5", "flat_amount": 1000},
]
JPY_TIERS = [
    {"up_to": 10, "unit_amount": "100"},
    {"up_to": None, "unit_amount": "80", "flat_amount": 50},
]
BHD_TIERS = [{"up_to": 10, "unit_amount": "1.5"}, {"up_to": None, "unit_amount": "0.75"}]
SPLIT_TIERS = [{"up_to": 1, "unit_amount": "0.4"}, {"up_to": None, "unit_amount": "0.2"}]

GRADUATED = [
    (EUR_TIERS, "0", 0),  # no tier reached: no flat amount either
    (EUR_TIERS, "1", 10),  # 1 × 10
    (EUR_TIERS, "99", 990),  # 99 × 10
    (EUR_TIERS, "100", 1000),  # boundary: 100 × 10, tier 2 not reached
    (EUR_TIERS, "101", 1505),  # 1000 + 1 × 5 + 500
    (EUR_TIERS, "250.5", 2253),  # 1000 + 150.5 × 5 + 500 = 2252.5 → 2253
    (EUR_TIERS, "1000", 6000),  # boundary: 1000 + 900 × 5 + 500
    (EUR_TIERS, "1001", 7003),  # beyond last bounded: 6000 + 2.5 + 1000 = 7002.5 → 7003
    (EUR_TIERS, "1002", 7005),  # 6000 + 5 + 1000
    (EUR_TIERS, "1003", 7008),  # 6000 + 7.5 + 1000 = 7007.5 → 7008
    (SPLIT_TIERS, "3", 1),  # 0.4 + 2 × 0.2 = 0.8 → 1 (rounding per tier would give 0)
    (JPY_TIERS, "10", 1000),  # 10 × 100 yen
    (JPY_TIERS, "15", 1450),  # 1000 + 5 × 80 + 50
    (BHD_TIERS, "11", 16),  # 15 + 0.75 = 15.75 fils → 16
    (BHD_TIERS, "12", 17),  # 15 + 1.5 = 16.5 fils → 17
]


@pytest.mark.parametrize(("tiers", "units", "expected"), GRADUATED)
def test_graduated(tiers: list[dict[str, Any]], units: str, expected: int) -> None:
    assert amount("graduated", {"tiers": tiers}, units) == expected


def test_graduated_tier_breakdown() -> None:
    charge = parse_charge("m", "graduated", {"tiers": EUR_TIERS}, None)
    result = rate_charge(charge, Usage(D(1001)))
    assert result.unit_amount is None
    assert [(t.index, t.up_to, t.units, t.flat_amount, t.amount) for t in result.tiers] == [
        (0, 100, D(100), 0, D(1000)),
        (1, 1000, D(900), 500, D(5000)),
        (2, None, D(1), 1000, D("1002.5")),
    ]
    assert result.exact_amount == D("7002.5")
    assert rate_charge(charge, Usage(D(0))).tiers == ()


# --- volume -----------------------------------------------------------------------------

VOLUME = [
    (EUR_TIERS, "0", 0, "10"),  # 0 units: nothing, not even a flat amount
    (EUR_TIERS, "1", 10, "10"),  # 1 × 10
    (EUR_TIERS, "100", 1000, "10"),  # boundary stays in tier 1: 100 × 10
    (EUR_TIERS, "100.5", 1003, "5"),  # tier 2: 100.5 × 5 + 500 = 1002.5 → 1003
    (EUR_TIERS, "101", 1005, "5"),  # 101 × 5 + 500
    (EUR_TIERS, "1000", 5500, "5"),  # boundary: 1000 × 5 + 500
    (EUR_TIERS, "1001", 3503, "2.5"),  # beyond: 1001 × 2.5 + 1000 = 3502.5 → 3503
    (JPY_TIERS, "15", 1250, "80"),  # 15 × 80 + 50
    (BHD_TIERS, "11", 8, "0.75"),  # 11 × 0.75 = 8.25 fils → 8
    (BHD_TIERS, "7", 11, "1.5"),  # 7 × 1.5 = 10.5 fils → 11
]


@pytest.mark.parametrize(("tiers", "units", "expected", "unit_amount"), VOLUME)
def test_volume(tiers: list[dict[str, Any]], units: str, expected: int, unit_amount: str) -> None:
    result = rate_charge(parse_charge("m", "volume", {"tiers": tiers}, None), Usage(D(units)))
    assert (result.amount, result.unit_amount) == (expected, D(unit_amount))
    assert len(result.tiers) == (0 if units == "0" else 1)


# --- package ----------------------------------------------------------------------------

PACKAGE = [
    # package_size, package_amount, free_units, units, expected
    (100, 500, 0, "0", 0),  # ceil(0 / 100) = 0
    (100, 500, 0, "1", 500),  # ceil(1 / 100) = 1 package
    (100, 500, 0, "100", 500),  # exactly one package
    (100, 500, 0, "101", 1000),  # ceil(1.01) = 2
    (100, 500, 0, "250", 1500),  # ceil(2.5) = 3
    (100, 500, 50, "50", 0),  # all free
    (100, 500, 50, "51", 500),  # 1 billable unit → 1 package
    (100, 500, 50, "150", 500),  # 100 billable → 1
    (100, 500, 50, "150.5", 1000),  # 100.5 billable → 2
    (1, 7, 0, "2.2", 21),  # ceil(2.2) = 3 × 7
    (1000, 300, 0, "2500", 900),  # jpy: ceil(2.5) = 3 × 300 yen
    (10, 1250, 0, "25", 3750),  # bhd: 3 × 1.250 BHD
]


@pytest.mark.parametrize(("size", "price", "free", "units", "expected"), PACKAGE)
def test_package(size: int, price: int, free: int, units: str, expected: int) -> None:
    props = {"package_size": size, "package_amount": price, "free_units": free}
    assert amount("package", props, units) == expected


# --- percentage -------------------------------------------------------------------------

PERCENTAGE_TOTAL = [
    # rate, summed value (pre-aggregated, no per-event options), expected
    ("2.9", "0", 0),
    ("2.9", "10000", 290),  # 2.9 % of 100.00 EUR
    ("2.9", "12345", 358),  # 358.005 → 358
    ("2.9", "50", 1),  # 1.45 → 1
    ("25", "2", 1),  # 0.5 → 1 (half-up)
    ("0", "999", 0),
    ("100", "999", 999),
    ("3.6", "6000", 216),  # jpy: 3.6 % of 6000 yen
    ("2.5", "1001", 25),  # bhd: 25.025 fils → 25
]


@pytest.mark.parametrize(("rate_", "units", "expected"), PERCENTAGE_TOTAL)
def test_percentage_of_the_total(rate_: str, units: str, expected: int) -> None:
    assert amount("percentage", {"rate": rate_}, units) == expected


PERCENTAGE_EVENTS = [
    # properties, event values (minor units), expected
    ({"rate": "2.9", "fixed_amount": 30}, [1000, 2000], 147),  # (29 + 30) + (58 + 30)
    ({"rate": "2.9", "fixed_amount": 30}, [], 0),  # no events, no fee
    ({"rate": "2.9"}, [1234, 1234, 1234], 107),  # 3 × 35.786 = 107.358 → 107 (not 3 × 36)
    ({"rate": "2.9", "fixed_amount": 30, "free_units": 2}, [1000, 2000, 3000], 117),  # 87 + 30
    ({"rate": "2.9", "free_units": 5}, [1000, 2000], 0),  # fewer events than free ones
    ({"rate": "1", "min_per_event": 50}, [100, 10000], 150),  # max(1, 50) + 100
    ({"rate": "1", "max_per_event": 200}, [100, 50000], 201),  # 1 + min(500, 200)
    ({"rate": "1", "min_per_event": "0.5", "max_per_event": "2.5"}, [10, 100, 1000], 4),
    # ^ max(0.1, 0.5) + 1 + min(10, 2.5) = 4
    ({"rate": "2.9", "fixed_amount": 30}, [1000, -500], 89),  # a refund earns 0 %: 59 + 30
    ({"rate": "3.6", "fixed_amount": 10}, [1000, 5000], 236),  # jpy: 46 + 190
    ({"rate": "2.5", "fixed_amount": "0.5"}, [10000, 1001], 276),  # bhd: 250.5 + 25.525
    # ^ = 276.025 fils → 276
]


@pytest.mark.parametrize(("props", "values", "expected"), PERCENTAGE_EVENTS)
def test_percentage_per_event(props: dict[str, Any], values: list[int], expected: int) -> None:
    assert events_amount(props, values) == expected


def test_percentage_per_event_options_need_event_values() -> None:
    charge = parse_charge("m", "percentage", {"rate": "2.9", "fixed_amount": 30}, None)
    with pytest.raises(PricingError, match=r"^usage\.event_values: "):
        rate_charge(charge, Usage(D(1000)))


def test_percentage_without_per_event_options_uses_the_total() -> None:
    charge = parse_charge("m", "percentage", {"rate": "2.9"}, None)
    # a refund nets against the sum when there is no per-event option: 2.9 % × 500
    assert rate_charge(charge, Usage.from_events([1000, -500])).exact_amount == D("14.5")


# --- minimum, negative usage ------------------------------------------------------------

MINIMUM = [
    ("0", 500, True),  # no usage: raised to the minimum
    ("499", 500, True),
    ("499.6", 500, True),  # exact 499.6 < 500: minimum
    ("500", 500, False),
    ("500.4", 500, False),  # → 500 by rounding, not by the minimum
    ("501", 501, False),
]


@pytest.mark.parametrize(("units", "expected", "applied"), MINIMUM)
def test_min_amount_raises_the_same_line(units: str, expected: int, applied: bool) -> None:
    charge = parse_charge("m", "per_unit", {"unit_amount": "1"}, 500)
    result = rate_charge(charge, Usage(D(units)))
    assert (result.amount, result.minimum_applied, result.quantity) == (expected, applied, D(units))


@pytest.mark.parametrize(
    ("model", "props"),
    [
        ("per_unit", {"unit_amount": "3"}),
        ("graduated", {"tiers": EUR_TIERS}),
        ("volume", {"tiers": EUR_TIERS}),
        ("package", {"package_size": 10, "package_amount": 100}),
        ("percentage", {"rate": "2.9"}),
    ],
)
def test_negative_usage_bills_nothing(model: str, props: dict[str, Any]) -> None:
    result = rate_charge(parse_charge("m", model, props, None), Usage(D(-42)))
    assert (result.amount, result.quantity) == (0, D(0))


def test_usage_units_must_match_event_values() -> None:
    assert Usage.from_events([1, 2]) == Usage(D(3), (D(1), D(2)))
    with pytest.raises(ValueError, match="differ from the event sum"):
        Usage(D(4), (D(1), D(2)))


# --- plans ------------------------------------------------------------------------------


def test_rate_a_plan() -> None:
    plan = PlanPricing(
        name="Pro",
        currency="eur",
        amount=2900,
        charges=(
            parse_charge("api_calls", "per_unit", {"unit_amount": "0.25"}, None, name="API calls"),
            parse_charge("storage_gb", "graduated", {"tiers": EUR_TIERS}, None),
            parse_charge("sms", "package", {"package_size": 100, "package_amount": 500}, 100),
        ),
    )
    lines = rate(plan, {"api_calls": Usage(D(10)), "storage_gb": Usage(D(101))}, PERIOD, 3)
    start, end = PERIOD.start, PERIOD.end
    assert lines == [
        Line("fixed", "Pro", D(3), D(2900), 8700, None, start, end),
        Line("usage", "API calls", D(10), D("0.25"), 3, "api_calls", start, end),  # 2.5 → 3
        Line("usage", "storage_gb", D(101), None, 1505, "storage_gb", start, end, lines[2].tiers),
        Line("usage", "sms", D(0), None, 100, "sms", start, end, minimum_applied=True),
    ]
    assert [t.amount for t in lines[2].tiers] == [D(1000), D(505)]


def test_free_plan_has_no_fixed_line_and_no_negative_amounts() -> None:
    plan = PlanPricing(
        "Free", "jpy", 0, (parse_charge("m", "per_unit", {"unit_amount": "0.5"}, None),)
    )
    lines = rate(plan, {"m": Usage(D(3))}, PERIOD)
    assert [(line.kind, line.amount) for line in lines] == [("usage", 2)]  # 1.5 yen → 2
    assert rate(PlanPricing("Seats", "bhd", 12500), {}, PERIOD, quantity=0) == []


def test_plan_and_period_checks() -> None:
    with pytest.raises(PricingError, match="^currency: unknown currency"):
        PlanPricing("x", "xxq", 0)
    with pytest.raises(PricingError, match="^currency: must be a lower-case"):
        PlanPricing("x", "EUR", 0)
    with pytest.raises(PricingError, match="^amount: must not be negative"):
        PlanPricing("x", "eur", -1)
    with pytest.raises(PricingError, match="^quantity: must not be negative"):
        rate(PlanPricing("x", "eur", 1), {}, PERIOD, quantity=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        Period(datetime(2026, 1, 1), datetime(2026, 2, 1, tzinfo=UTC))  # noqa: DTZ001
    with pytest.raises(ValueError, match="after its start"):
        Period(PERIOD.end, PERIOD.start)
    with pytest.raises(ValueError, match="do not fit"):
        Charge("m", "volume", parse_charge("m", "per_unit", {"unit_amount": "1"}, None).properties)


# --- validation -------------------------------------------------------------------------

T = {"up_to": None, "unit_amount": "1"}  # a valid last tier

INVALID = [
    ("per_unit", {}, "unit_amount: is required"),
    ("per_unit", {"unit_amount": 0.25}, "unit_amount: must be a decimal string, not a float"),
    ("per_unit", {"unit_amount": "-1"}, "unit_amount: must not be negative"),
    ("per_unit", {"unit_amount": "0.1234567890123"}, "unit_amount: at most 12 decimal places"),
    ("per_unit", {"unit_amount": "1e3"}, "unit_amount: '1e3' is not a decimal string"),
    ("per_unit", {"unit_amount": "NaN"}, "unit_amount: 'NaN' is not a decimal string"),
    ("per_unit", {"unit_amount": True}, "unit_amount: must be a decimal string"),
    ("per_unit", {"unit_amount": "1", "currency": "eur"}, "currency: unknown property"),
    ("graduated", {}, "tiers: is required"),
    ("graduated", {"tiers": []}, "tiers: must be a non-empty list"),
    ("graduated", {"tiers": [{"up_to": 10, "unit_amount": "1"}]}, "tiers[0].up_to: the last"),
    (
        "graduated",
        {"tiers": [{"up_to": 10, "unit_amount": "1"}, {"up_to": 10, "unit_amount": "1"}, T]},
        "tiers[1].up_to: must be greater than tiers[0].up_to",
    ),
    (
        "volume",
        {"tiers": [{"up_to": 10, "unit_amount": "1"}, {"up_to": 5, "unit_amount": "1"}, T]},
        "tiers[1].up_to: must be greater than tiers[0].up_to",
    ),
    ("volume", {"tiers": [T, T]}, "tiers[0].up_to: only the last tier may be unbounded"),
    ("volume", {"tiers": [{"unit_amount": "1"}]}, "tiers[0].up_to: is required"),
    ("volume", {"tiers": [{"up_to": 0, "unit_amount": "1"}, T]}, "tiers[0].up_to: must be at"),
    ("volume", {"tiers": [{"up_to": 1.5, "unit_amount": "1"}, T]}, "tiers[0].up_to: must be an"),
    ("volume", {"tiers": [{"up_to": None}]}, "tiers[0].unit_amount: is required"),
    ("volume", {"tiers": [{"up_to": 1, "unit_amount": "1"}, 3]}, "tiers[1]: must be an object"),
    ("volume", {"tiers": [{**T, "flat_amount": -5}]}, "tiers[0].flat_amount: must not be neg"),
    ("volume", {"tiers": [{**T, "flat_amount": 5.0}]}, "tiers[0].flat_amount: must be an integer"),
    ("volume", {"tiers": [{**T, "unit_amount": "-0.1"}]}, "tiers[0].unit_amount: must not be"),
    ("graduated", {"tiers": [{**T, "flat": 1}]}, "tiers[0].flat: unknown property"),
    ("package", {"package_size": 0, "package_amount": 1}, "package_size: must be at least 1"),
    ("package", {"package_amount": 1}, "package_size: is required"),
    ("package", {"package_size": 1, "package_amount": "5"}, "package_amount: must be an integer"),
    ("package", {"package_size": 1, "package_amount": -5}, "package_amount: must not be negative"),
    ("package", {"package_size": 1, "package_amount": 5, "free_units": -1}, "free_units: must"),
    ("percentage", {}, "rate: is required"),
    ("percentage", {"rate": "100.01"}, "rate: must be at most 100"),
    ("percentage", {"rate": "-1"}, "rate: must not be negative"),
    ("percentage", {"rate": 2.9}, "rate: must be a decimal string, not a float"),
    ("percentage", {"rate": "1", "fixed_amount": "-1"}, "fixed_amount: must not be negative"),
    ("percentage", {"rate": "1", "min_per_event": 0.5}, "min_per_event: must be a decimal"),
    (
        "percentage",
        {"rate": "1", "min_per_event": 50, "max_per_event": "49.9"},
        "max_per_event: must not be less than min_per_event",
    ),
    ("percentage", {"rate": "1", "package_size": 3}, "package_size: unknown property"),
    ("tiered", {}, "model: must be one of per_unit, graduated, volume, package, percentage"),
]


@pytest.mark.parametrize(("model", "props", "message"), INVALID)
def test_validation_names_the_property(model: str, props: dict[str, Any], message: str) -> None:
    with pytest.raises(PricingError) as caught:
        parse_charge("m", model, props, None)
    assert str(caught.value).startswith(message)
    assert caught.value.path == message.split(":")[0]
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("meter", "props", "min_amount", "message"),
    [
        ("", {"unit_amount": "1"}, None, "meter: must be a non-empty string"),
        ("m", {"unit_amount": "1"}, -1, "min_amount: must not be negative"),
        ("m", {"unit_amount": "1"}, 9.5, "min_amount: must be an integer, not a float"),
        ("m", [("unit_amount", "1")], None, "properties: must be an object"),
    ],
)
def test_validation_of_the_charge(meter: str, props: Any, min_amount: Any, message: str) -> None:
    with pytest.raises(PricingError, match=f"^{message}$"):
        parse_charge(meter, "per_unit", props, min_amount)


def test_parsed_properties_round_trip() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("per_unit", {"unit_amount": "0.000000000001"}),
        ("graduated", {"tiers": EUR_TIERS}),
        ("volume", {"tiers": JPY_TIERS}),
        ("package", {"package_size": 100, "package_amount": 500, "free_units": 5}),
        (
            "percentage",
            {"rate": "2.9", "fixed_amount": "30", "free_units": 1, "max_per_event": "1000"},
        ),
    ]
    for model, props in cases:
        charge = parse_charge("m", model, props, None)
        assert parse_charge("m", model, dump_properties(charge.properties), None) == charge
    assert dump_properties(parse_charge("m", "volume", {"tiers": EUR_TIERS}, None).properties) == {
        "tiers": EUR_TIERS
    }
