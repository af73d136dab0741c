"""Exact money: integer minor units, Decimal arithmetic, one documented rounding.

* Amounts are ``int`` in the currency's minor unit (cents for EUR, yen for JPY, fils for BHD).
* Unit prices are ``Decimal`` *in minor units* with up to 12 decimals (Stripe's
  ``unit_amount_decimal`` convention: ``"0.0025"`` EUR-cents per API call).
* Intermediate results stay unrounded ``Decimal`` minor units; a value becomes an ``int`` once,
  per invoice line, with :func:`round_minor` (ROUND_HALF_UP: 0.5 → 1, -0.5 → -1).
* :func:`allocate` splits an amount by weights so the parts always sum back to the total.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import (
    ROUND_FLOOR,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import cache

from babel.numbers import get_currency_precision, list_currencies

MAX_UNIT_DECIMALS = 12
# The largest amount of money (minor units) any input may carry: a price, a fee, a coupon,
# a payment, a one-off line (10 000 000 000.00 EUR; ¥1 000 000 000 000). Anything above is
# a typo. The bound keeps a plan's fee × the largest quantity (10**6) at 10**18, inside a
# bigint column (9.2 × 10**18) with room for tax.
MAX_AMOUNT = 10**12
_PRECISION = 60  # digits kept in intermediate Decimal arithmetic: far beyond any invoice


@cache
def exponent(currency: str) -> int:
    """Number of minor-unit decimals of an ISO 4217 currency (eur 2, jpy 0, bhd 3)."""
    code = currency.upper()
    if code not in list_currencies():
        raise ValueError(f"unknown currency {currency!r}")
    return int(get_currency_precision(code))


def is_currency(currency: str) -> bool:
    return currency.upper() in list_currencies() and currency == currency.lower()


# Contexts passed to Decimal's methods explicitly: the same arithmetic as a localcontext()
# block, without switching the thread's context (a billing run does this millions of times).
# EXACT raises rather than silently losing a digit (the pricing rules compute in it too).
_ROUNDING = Context(prec=_PRECISION, rounding=ROUND_HALF_UP)
EXACT = Context(prec=_PRECISION, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ONE = Decimal(1)


def round_minor(value: Decimal) -> int:
    """Round an unrounded minor-unit amount to an integer, half away from zero."""
    return int(value.quantize(_ONE, context=_ROUNDING))


def to_minor(major: Decimal | str, currency: str) -> int:
    """Major units ("12.345" BHD) → minor units (12345), rounded half-up."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return round_minor(Decimal(major).scaleb(exponent(currency)))


def to_major(minor: int, currency: str) -> Decimal:
    """Minor units → an exact Decimal in major units (1999 eur → Decimal("19.99"))."""
    return Decimal(minor).scaleb(-exponent(currency))


def parse_decimal(value: str | int | Decimal, *, max_decimals: int = MAX_UNIT_DECIMALS) -> Decimal:
    """A finite Decimal from a decimal string/int (never a float), at most ``max_decimals``."""
    if isinstance(value, float) or isinstance(value, bool):
        raise ValueError("must be a decimal string, not a float")
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not result.is_finite():
        raise ValueError("must be finite")
    exp = result.as_tuple().exponent
    if isinstance(exp, int) and -exp > max_decimals:
        raise ValueError(f"at most {max_decimals} decimal places")
    return result


def multiply(amount: Decimal | int, factor: Decimal | int) -> Decimal:
    """Exact product (within _PRECISION digits; a product that would need more raises
    ``Inexact`` rather than being rounded)."""
    return EXACT.multiply(Decimal(amount), Decimal(factor))


def allocate(total: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split ``total`` minor units in proportion to ``weights``; parts sum to ``total``.

    Largest-remainder method: each part gets the floor of its exact share, the leftover
    units go one each to the parts with the largest remainders (ties: earliest first).
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(Decimal(w) < 0 for w in weights):
        raise ValueError("weights must not be negative")
    weight_sum = sum((Decimal(w) for w in weights), Decimal(0))
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        exact = [Decimal(magnitude) * Decimal(w) / weight_sum for w in weights]
        floors = [int(x.to_integral_value(rounding=ROUND_FLOOR)) for x in exact]
        remainders = [x - f for x, f in zip(exact, floors, strict=True)]
    leftover = magnitude - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        floors[i] += 1
    return [sign * part for part in floors]
