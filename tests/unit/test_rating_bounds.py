"""Rating never lets a decimal exception escape: a huge usage is rated exactly or refused
with ``AmountOutOfRange`` (issue 13: an event of 1e308 made upcoming_invoice answer 500)."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from kassa.metering.rules import MAX_VALUE_EXCLUSIVE
from kassa.pricing import AmountOutOfRange, Usage, parse_charge, rate_charge

HUGE = ["1e308", "123456789012345678901234567890123456789012345678901234567890.5", "1e70"]
TIERS = [{"up_to": 10, "unit_amount": "3"}, {"up_to": None, "unit_amount": "0.7"}]
MODELS = [
    ("per_unit", {"unit_amount": "0.123456789012"}),
    ("graduated", {"tiers": TIERS}),
    ("volume", {"tiers": TIERS}),
    ("package", {"package_size": 3, "package_amount": 1000}),
    ("percentage", {"rate": "2.9"}),
]


@pytest.mark.parametrize(("model", "props"), MODELS)
@pytest.mark.parametrize("units", HUGE)
def test_a_huge_usage_is_refused_clearly_never_with_a_decimal_exception(
    model: str, props: dict[str, object], units: str
) -> None:
    charge = parse_charge("m", model, props, None)
    with pytest.raises(AmountOutOfRange) as info:
        rate_charge(charge, Usage(Decimal(units)))
    assert not isinstance(info.value, decimal.DecimalException)
    assert info.value.path == "usage"


def test_the_largest_accepted_value_times_a_fine_price_is_rated_exactly() -> None:
    # the ingestion bounds (|value| < 10^15, 12 decimals) keep every product exact
    largest = MAX_VALUE_EXCLUSIVE - Decimal("0.000000000001")
    charge = parse_charge("m", "per_unit", {"unit_amount": "0.000000000001"}, None)
    result = rate_charge(charge, Usage(largest))
    assert result.exact_amount == Decimal("999.999999999999999999999999")
    assert result.amount == 1000


def test_an_amount_beyond_a_bigint_is_refused() -> None:
    charge = parse_charge("m", "per_unit", {"unit_amount": "1000000000000"}, None)
    with pytest.raises(AmountOutOfRange, match="beyond any storable amount"):
        rate_charge(charge, Usage(Decimal("999999999999999")))
