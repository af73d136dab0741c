"""Hypothesis invariants of the pricing models (the golden tables live in test_pricing.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from kassa.core.money import round_minor
from kassa.invoicing import compose
from kassa.pricing import (
    MODELS,
    Percentage,
    Period,
    PlanPricing,
    Usage,
    dump_properties,
    parse_charge,
    rate,
    rate_charge,
)

D = Decimal
FAST = settings(max_examples=150, deadline=None)

# Unit prices in minor units with up to 12 decimals, as the API sends them.
unit_amounts = st.builds(
    lambda n, places: f"{D(n).scaleb(-places):f}",
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=12),
)
flat_amounts = st.integers(min_value=0, max_value=10**6)
# Units: integers and fractions with up to 3 decimals, including tier boundaries.
units = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(D),
    st.builds(lambda n: D(n).scaleb(-3), st.integers(min_value=0, max_value=10**9)),
)


@st.composite
def tier_lists(draw: st.DrawFn, *, flat: bool = True) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**5), max_size=5)))
    tiers: list[dict[str, Any]] = []
    for up_to in [*bounds, None]:
        tier: dict[str, Any] = {"up_to": up_to, "unit_amount": draw(unit_amounts)}
        if flat and draw(st.booleans()):
            tier["flat_amount"] = draw(flat_amounts)
        tiers.append(tier)
    return tiers


@st.composite
def any_charge(draw: st.DrawFn) -> tuple[str, dict[str, Any], int | None]:
    model = draw(st.sampled_from(MODELS))
    props: dict[str, Any]
    if model == "per_unit":
        props = {"unit_amount": draw(unit_amounts)}
    elif model in ("graduated", "volume"):
        props = {"tiers": draw(tier_lists())}
    elif model == "package":
        props = {
            "package_size": draw(st.integers(min_value=1, max_value=10**4)),
            "package_amount": draw(flat_amounts),
            "free_units": draw(st.integers(min_value=0, max_value=100)),
        }
    else:
        props = {"rate": draw(unit_amounts.filter(lambda r: D(r) <= 100))}
        options: dict[str, Any] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "fixed_amount": unit_amounts,
                    "free_units": st.integers(min_value=0, max_value=5),
                    "min_per_event": st.integers(min_value=0, max_value=1000),
                },
            )
        )
        props.update(options)
        if draw(st.booleans()):
            props["max_per_event"] = options.get("min_per_event", 0) + draw(flat_amounts)
    min_amount = draw(st.none() | st.integers(min_value=0, max_value=10**5))
    return model, props, min_amount


event_values = st.lists(st.integers(min_value=-(10**6), max_value=10**8), max_size=20)


@FAST
@given(tier_lists(), units, units)
@example([{"up_to": 100, "unit_amount": "1"}, {"up_to": None, "unit_amount": "0"}], D(100), D(101))
def test_graduated_never_decreases(tiers: list[dict[str, Any]], a: Decimal, b: Decimal) -> None:
    charge = parse_charge("m", "graduated", {"tiers": tiers}, None)
    low, high = sorted((a, b))
    first, second = rate_charge(charge, Usage(low)), rate_charge(charge, Usage(high))
    assert first.exact_amount <= second.exact_amount
    assert first.amount <= second.amount


@FAST
@given(st.data(), unit_amounts, units)
def test_graduated_at_one_price_is_per_unit(data: st.DataObject, price: str, n: Decimal) -> None:
    tiers = data.draw(tier_lists(flat=False))
    for tier in tiers:
        tier["unit_amount"] = price
    graduated = rate_charge(parse_charge("m", "graduated", {"tiers": tiers}, None), Usage(n))
    per_unit = rate_charge(parse_charge("m", "per_unit", {"unit_amount": price}, None), Usage(n))
    assert graduated.exact_amount == per_unit.exact_amount
    assert graduated.amount == per_unit.amount


@FAST
@given(
    st.integers(min_value=1, max_value=10**4),
    flat_amounts,
    st.integers(min_value=0, max_value=10**3),
    units,
)
def test_package_rounds_up(size: int, price: int, free: int, n: Decimal) -> None:
    props = {"package_size": size, "package_amount": price, "free_units": free}
    result = rate_charge(parse_charge("m", "package", props, None), Usage(n))
    billable = max(Fraction(n) - free, Fraction(0))
    assert result.amount == math.ceil(billable / size) * price
    # never below the same usage priced per unit (package_amount / package_size each)
    assert Fraction(result.exact_amount) >= billable * Fraction(price, size)


@FAST
@given(tier_lists(), units)
def test_volume_is_the_single_tier_price(tiers: list[dict[str, Any]], n: Decimal) -> None:
    result = rate_charge(parse_charge("m", "volume", {"tiers": tiers}, None), Usage(n))
    if n == 0:
        assert result.amount == 0
        return
    tier = next(t for t in tiers if t["up_to"] is None or n <= t["up_to"])
    with localcontext(prec=60):
        expected = n * D(tier["unit_amount"]) + tier.get("flat_amount", 0)
    assert result.exact_amount == expected
    assert result.amount == round_minor(expected)
    assert result.unit_amount == D(tier["unit_amount"])


@FAST
@given(any_charge(), event_values)
def test_no_model_returns_a_negative_amount(
    spec: tuple[str, dict[str, Any], int | None], values: list[int]
) -> None:
    model, props, min_amount = spec
    charge = parse_charge("m", model, props, min_amount)
    result = rate_charge(charge, Usage.from_events(values))
    assert result.amount >= 0
    assert result.exact_amount >= 0
    if min_amount is not None:
        assert result.amount >= min_amount


@FAST
@given(any_charge(), event_values)
def test_rounding_happens_once(
    spec: tuple[str, dict[str, Any], int | None], values: list[int]
) -> None:
    model, props, min_amount = spec
    result = rate_charge(parse_charge("m", model, props, min_amount), Usage.from_events(values))
    assert result.amount == round_minor(result.exact_amount)
    if result.tiers and not result.minimum_applied:
        # the line is the rounded sum of the exact (unrounded) tier amounts
        assert result.exact_amount == sum((t.amount for t in result.tiers), D(0))
    if model == "percentage" and not result.minimum_applied:
        assert result.exact_amount == _percentage_reference(props, values)


def _percentage_reference(props: dict[str, Any], values: list[int]) -> Decimal:
    """Straight from the API.md wording, independently of the implementation."""
    with localcontext(prec=60):
        return _percentage_exact(props, values)


def _percentage_exact(props: dict[str, Any], values: list[int]) -> Decimal:
    factor = D(props["rate"]) / 100
    per_event = any(
        k in props and D(props[k]) != 0 for k in ("fixed_amount", "free_units", "min_per_event")
    )
    if not per_event and "max_per_event" not in props:
        return max(D(sum(values)), D(0)) * factor
    total = D(0)
    for value in values[props.get("free_units", 0) :]:
        fee = max(D(max(value, 0)) * factor + D(props.get("fixed_amount", 0)), D(0))
        fee = max(fee, D(props.get("min_per_event", 0)))
        if "max_per_event" in props:
            fee = min(fee, D(props["max_per_event"]))
        total += fee
    return total


@FAST
@given(any_charge())
def test_dumped_properties_parse_back(spec: tuple[str, dict[str, Any], int | None]) -> None:
    model, props, min_amount = spec
    charge = parse_charge("m", model, props, min_amount)
    assert parse_charge("m", model, dump_properties(charge.properties), min_amount) == charge


@FAST
@given(st.lists(any_charge(), min_size=1, max_size=4), st.lists(units, min_size=4, max_size=4))
def test_invoice_usage_lines_are_the_pricing_lines(
    charges: list[tuple[str, dict[str, Any], int | None]], amounts: list[Decimal]
) -> None:
    """``compose.rate_usage`` (billing's usage lines, made directly) says what
    ``rate`` says of them, line for line; a meter without usage rates as 0 units."""
    parsed = tuple(
        parse_charge(f"m{n}", model, props, minimum, name=f"Charge {n}" if n % 2 else None)
        for n, (model, props, minimum) in enumerate(charges)
    )
    pricing = PlanPricing("Plan", "eur", 0, parsed)
    usage = {
        f"m{n}": Usage(amount) for n, amount in enumerate(amounts[: len(charges)]) if n != 1
    }  # m1 has none
    period = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    # (per-event percentage needs the events themselves: billing reads those another way)
    assume(not any(isinstance(c.properties, Percentage) and c.properties.per_event for c in parsed))
    expected = rate(pricing, usage, Period(*period))  # (no fixed fee: amount 0)
    lines = compose.rate_usage(pricing, "revenue:plan", period, usage)
    assert [
        (x.kind, x.description, x.quantity, x.unit_amount, x.amount, x.meter, x.period_start,
         x.period_end)
        for x in lines
    ] == [
        (x.kind, x.description, x.quantity, x.unit_amount, x.amount, x.meter, x.period_start,
         x.period_end)
        for x in expected
    ]  # fmt: skip
    assert {x.account for x in lines} == {"revenue:plan"}
