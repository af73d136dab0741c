from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.core import money


def test_exponents() -> None:
    assert money.exponent("eur") == 2
    assert money.exponent("jpy") == 0
    assert money.exponent("bhd") == 3
    with pytest.raises(ValueError, match="unknown currency"):
        money.exponent("xxq")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5", 1), ("1.5", 2), ("2.4999", 2), ("-0.5", -1), ("-1.5", -2), ("0.49999999999", 0)],
)
def test_round_half_up(value: str, expected: int) -> None:
    assert money.round_minor(Decimal(value)) == expected


def test_major_minor() -> None:
    assert money.to_minor("12.345", "bhd") == 12345
    assert money.to_minor("19.995", "eur") == 2000
    assert money.to_minor("1000", "jpy") == 1000
    assert money.to_major(1999, "eur") == Decimal("19.99")


def test_parse_decimal_refuses_floats_and_too_many_decimals() -> None:
    assert money.parse_decimal("0.0025") == Decimal("0.0025")
    with pytest.raises(ValueError, match="float"):
        money.parse_decimal(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="12 decimal"):
        money.parse_decimal("0.1234567890123")
    with pytest.raises(ValueError, match="finite"):
        money.parse_decimal("NaN")


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(any),
)
def test_allocate_always_sums_back(total: int, weights: list[int]) -> None:
    parts = money.allocate(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Decimal(total) * weight / weight_sum
        assert abs(Decimal(part) - exact) < 1
