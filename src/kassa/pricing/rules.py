"""Pricing models as pure functions: a plan's charges + measured usage → invoice lines.

Money follows :mod:`kassa.core.money`: amounts are ``int`` minor units, unit prices are
``Decimal`` minor units with up to 12 decimals. Everything is computed exactly in ``Decimal``
(an inexact step raises instead of rounding silently) and each line is rounded **once** with
:func:`~kassa.core.money.round_minor` (half-up). No currency needs special handling: JPY (0
decimals) and BHD (3) are already in minor units like EUR.

Decisions, documented in ``docs/pricing.md``:

* Tier bounds are inclusive (``up_to: 10`` holds units 1-10, Stripe's convention); units may be
  fractional (10.5 GB lies in the tier after ``up_to: 10``).
* Zero units cost nothing in every model: no tier is "reached", so no flat amount is charged.
  A floor belongs in the charge's ``min_amount``.
* Negative usage (a meter netting refunds) is billed as zero units; in per-event percentage
  pricing a negative event value earns no fee. No amount is ever negative.
* ``min_amount`` raises the same usage line (quantity kept) and applies at zero usage too.
* ``unit_amount`` is set on a line only where amount = quantity × unit_amount (+ the tier's
  flat amount for volume): per_unit and volume. Graduated lines carry their tier breakdown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, DecimalException, localcontext
from typing import Any, Final, Literal, TypeAlias, get_args

from kassa.core.money import (
    EXACT,
    MAX_AMOUNT,
    MAX_UNIT_DECIMALS,
    exponent,
    multiply,
    parse_decimal,
    round_minor,
)

Model: TypeAlias = Literal["per_unit", "graduated", "volume", "package", "percentage"]
MODELS: Final[tuple[Model, ...]] = get_args(Model)

MAX_COUNT: Final = 10**18  # tier bounds, package sizes, free units (fits a BigInteger)
_ZERO: Final = Decimal(0)
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class PricingError(ValueError):
    """Invalid pricing input; ``path`` names the offending property (``tiers[1].up_to``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class AmountOutOfRange(PricingError):
    """The usage is too large (or too finely divided) for this charge's amount to be
    computed exactly or stored (a bigint of minor units): a clear error, never a rounded
    or overflowing amount."""


MAX_STORABLE_AMOUNT: Final = 2**63 - 1  # the amount columns are bigint minor units


# --- data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A billing period [start, end) in aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"period {name} must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("period end must be after its start")


@dataclass(frozen=True)
class Usage:
    """A meter's aggregated value for a period; ``event_values`` are the individual event
    values (minor units for transaction-value meters), needed by per-event percentage pricing.
    When given, ``units`` must equal their sum (see :meth:`from_events`)."""

    units: Decimal
    event_values: tuple[Decimal, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.units, Decimal) or not self.units.is_finite():
            raise ValueError("usage units must be a finite Decimal")
        if self.event_values is not None:
            if not all(isinstance(v, Decimal) and v.is_finite() for v in self.event_values):
                raise ValueError("usage event values must be finite Decimals")
            with _exact():
                total = sum(self.event_values, _ZERO)
            if total != self.units:
                raise ValueError(f"usage units {self.units} differ from the event sum {total}")

    @classmethod
    def from_events(cls, values: Iterable[Decimal | int]) -> Usage:
        events = tuple(Decimal(v) for v in values)
        with _exact():
            return cls(units=sum(events, _ZERO), event_values=events)


@dataclass(frozen=True)
class Tier:
    up_to: int | None  # inclusive upper bound; None = unbounded (last tier only)
    unit_amount: Decimal
    flat_amount: int = 0


@dataclass(frozen=True)
class PerUnit:
    unit_amount: Decimal


@dataclass(frozen=True)
class Graduated:
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Volume:
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class Package:
    package_size: int
    package_amount: int
    free_units: int = 0


@dataclass(frozen=True)
class Percentage:
    rate: Decimal  # percent: Decimal("2.9") = 2.9 %
    fixed_amount: Decimal = _ZERO  # per event, minor units
    free_units: int = 0  # the first N events are free
    min_per_event: Decimal = _ZERO
    max_per_event: Decimal | None = None

    @property
    def per_event(self) -> bool:
        """True when the fee depends on individual events, not only on their sum."""
        return (
            self.fixed_amount > 0
            or self.free_units > 0
            or self.min_per_event > 0
            or self.max_per_event is not None
        )


Properties: TypeAlias = PerUnit | Graduated | Volume | Package | Percentage
_MODEL_OF: Final[dict[type[Any], Model]] = {
    PerUnit: "per_unit",
    Graduated: "graduated",
    Volume: "volume",
    Package: "package",
    Percentage: "percentage",
}


@dataclass(frozen=True)
class Charge:
    """One usage-based price of a plan. Build it with :func:`parse_charge` from API input."""

    meter: str
    model: Model
    properties: Properties
    min_amount: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if _MODEL_OF.get(type(self.properties)) != self.model:
            raise ValueError(f"properties {type(self.properties).__name__} do not fit {self.model}")


@dataclass(frozen=True)
class PlanPricing:
    name: str
    currency: str
    amount: int  # fixed fee per period and per unit of subscription quantity
    charges: tuple[Charge, ...] = ()

    def __post_init__(self) -> None:
        if self.currency != self.currency.lower():
            raise PricingError("currency", "must be a lower-case ISO 4217 code")
        try:
            exponent(self.currency)
        except ValueError:
            raise PricingError("currency", f"unknown currency {self.currency!r}") from None
        _check_int("amount", self.amount, 0, MAX_AMOUNT)


@dataclass(frozen=True)
class TierLine:
    """One reached tier of a tiered charge; ``amount`` is unrounded minor units."""

    index: int
    up_to: int | None
    units: Decimal
    unit_amount: Decimal
    flat_amount: int
    amount: Decimal


@dataclass(frozen=True)
class ChargeResult:
    amount: int  # round_minor(exact_amount)
    exact_amount: Decimal  # after min_amount, before the one rounding
    quantity: Decimal  # the units billed (negative usage counts as 0)
    unit_amount: Decimal | None
    tiers: tuple[TierLine, ...] = ()
    minimum_applied: bool = False


@dataclass(frozen=True)
class Line:
    kind: Literal["fixed", "usage"]
    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: int
    meter: str | None
    period_start: datetime
    period_end: datetime
    tiers: tuple[TierLine, ...] = ()
    minimum_applied: bool = False


# --- rating -----------------------------------------------------------------------------


def _exact() -> AbstractContextManager[Context]:
    """Decimal arithmetic that raises rather than silently losing a digit."""
    return localcontext(EXACT)


NO_USAGE: Final = Usage(_ZERO)  # a meter without usage in the period


def rate_charge(charge: Charge, usage: Usage) -> ChargeResult:
    """The amount of one charge for one period's usage, rounded once (half-up). Raises
    ``AmountOutOfRange`` when that amount cannot be computed exactly or stored."""
    try:
        result = _rate_charge(charge, usage)
    except DecimalException:
        raise AmountOutOfRange(
            "usage", f"{usage.units} units cannot be rated exactly: the amount is out of range"
        ) from None
    if abs(result.amount) > MAX_STORABLE_AMOUNT:
        raise AmountOutOfRange(
            "usage", f"{usage.units} units come to {result.amount}, beyond any storable amount"
        )
    return result


def _rate_charge(charge: Charge, usage: Usage) -> ChargeResult:
    units = max(usage.units, _ZERO)
    props = charge.properties
    unit_amount: Decimal | None = None
    tiers: tuple[TierLine, ...] = ()
    with _exact():
        if isinstance(props, PerUnit):
            exact, unit_amount = multiply(units, props.unit_amount), props.unit_amount
        elif isinstance(props, Graduated):
            tiers = _graduated(props.tiers, units)
            exact = sum((t.amount for t in tiers), _ZERO)
        elif isinstance(props, Volume):
            tiers = _volume(props.tiers, units)
            exact = tiers[0].amount if tiers else _ZERO
            unit_amount = tiers[0].unit_amount if tiers else props.tiers[0].unit_amount
        elif isinstance(props, Package):
            exact = _package(props, units)
        else:
            exact = _percentage(props, units, usage.event_values)
        minimum_applied = charge.min_amount is not None and exact < charge.min_amount
        if minimum_applied:
            exact = Decimal(charge.min_amount or 0)
    return ChargeResult(
        amount=round_minor(exact),
        exact_amount=exact,
        quantity=units,
        unit_amount=unit_amount,
        tiers=tiers,
        minimum_applied=minimum_applied,
    )


def _graduated(tiers: tuple[Tier, ...], units: Decimal) -> tuple[TierLine, ...]:
    lines: list[TierLine] = []
    lower = _ZERO
    for index, tier in enumerate(tiers):
        upper = units if tier.up_to is None else min(units, Decimal(tier.up_to))
        in_tier = upper - lower
        if in_tier <= 0:
            break
        lines.append(_tier_line(index, tier, in_tier))
        if tier.up_to is None:
            break
        lower = Decimal(tier.up_to)
    return tuple(lines)


def _volume(tiers: tuple[Tier, ...], units: Decimal) -> tuple[TierLine, ...]:
    if units <= 0:
        return ()
    for index, tier in enumerate(tiers):
        if tier.up_to is None or units <= tier.up_to:
            return (_tier_line(index, tier, units),)
    raise AssertionError("the last tier is unbounded")  # guaranteed by parse_charge


def _tier_line(index: int, tier: Tier, units: Decimal) -> TierLine:
    amount = multiply(units, tier.unit_amount) + tier.flat_amount
    return TierLine(index, tier.up_to, units, tier.unit_amount, tier.flat_amount, amount)


def _package(props: Package, units: Decimal) -> Decimal:
    billable = max(units - props.free_units, _ZERO)
    packages, rest = divmod(billable, Decimal(props.package_size))
    if rest:
        packages += 1
    return multiply(packages, props.package_amount)


def _percentage(
    props: Percentage, units: Decimal, event_values: tuple[Decimal, ...] | None
) -> Decimal:
    factor = props.rate.scaleb(-2)
    if not props.per_event:
        return multiply(units, factor)
    if event_values is None:
        raise PricingError(
            "usage.event_values",
            "percentage pricing with per-event options needs the individual event values",
        )
    total = _ZERO
    for value in event_values[props.free_units :]:
        fee = max(multiply(max(value, _ZERO), factor) + props.fixed_amount, props.min_per_event)
        if props.max_per_event is not None:
            fee = min(fee, props.max_per_event)
        total += fee
    return total


def rate(
    plan: PlanPricing, usage: Mapping[str, Usage], period: Period, quantity: int = 1
) -> list[Line]:
    """Invoice lines for one period: the fixed fee (× quantity; omitted when 0), then one
    usage line per charge in plan order. A meter missing from ``usage`` has 0 units."""
    _check_int("quantity", quantity, 0, MAX_COUNT)
    lines: list[Line] = []
    if plan.amount * quantity:
        lines.append(
            Line(
                kind="fixed",
                description=plan.name,
                quantity=Decimal(quantity),
                unit_amount=Decimal(plan.amount),
                amount=plan.amount * quantity,
                meter=None,
                period_start=period.start,
                period_end=period.end,
            )
        )
    for charge in plan.charges:
        result = rate_charge(charge, usage.get(charge.meter, NO_USAGE))
        lines.append(
            Line(
                kind="usage",
                description=charge.name or charge.meter,
                quantity=result.quantity,
                unit_amount=result.unit_amount,
                amount=result.amount,
                meter=charge.meter,
                period_start=period.start,
                period_end=period.end,
                tiers=result.tiers,
                minimum_applied=result.minimum_applied,
            )
        )
    return lines


# --- validation -------------------------------------------------------------------------


def parse_charge(
    meter: str,
    model: str,
    properties: Mapping[str, Any],
    min_amount: int | None,
    *,
    name: str | None = None,
) -> Charge:
    """Validate a plan charge as sent to ``POST /v1/plans``; raise :class:`PricingError`
    naming the offending property path (``tiers[1].up_to: ...``)."""
    if not isinstance(meter, str) or not meter.strip():
        raise PricingError("meter", "must be a non-empty string")
    if model not in MODELS:
        raise PricingError("model", f"must be one of {', '.join(MODELS)}")
    if not isinstance(properties, Mapping):
        raise PricingError("properties", "must be an object")
    if min_amount is not None:
        _check_int("min_amount", min_amount, 0, MAX_AMOUNT)
    if name is not None and not isinstance(name, str):
        raise PricingError("name", "must be a string")
    props = _PARSERS[model](properties)
    return Charge(meter, model, props, min_amount, name)


def _parse_per_unit(props: Mapping[str, Any]) -> PerUnit:
    _only(props, "per_unit", ("unit_amount",))
    return PerUnit(_unit_amount("unit_amount", _required(props, "unit_amount")))


def _parse_graduated(props: Mapping[str, Any]) -> Graduated:
    _only(props, "graduated", ("tiers",))
    return Graduated(_tiers(_required(props, "tiers")))


def _parse_volume(props: Mapping[str, Any]) -> Volume:
    _only(props, "volume", ("tiers",))
    return Volume(_tiers(_required(props, "tiers")))


def _parse_package(props: Mapping[str, Any]) -> Package:
    _only(props, "package", ("package_size", "package_amount", "free_units"))
    return Package(
        package_size=_check_int("package_size", _required(props, "package_size"), 1, MAX_COUNT),
        package_amount=_check_int(
            "package_amount", _required(props, "package_amount"), 0, MAX_AMOUNT
        ),
        free_units=_check_int("free_units", props.get("free_units", 0), 0, MAX_COUNT),
    )


def _parse_percentage(props: Mapping[str, Any]) -> Percentage:
    keys = ("rate", "fixed_amount", "free_units", "min_per_event", "max_per_event")
    _only(props, "percentage", keys)
    rate_ = _decimal("rate", _required(props, "rate"), Decimal(100))
    maximum = props.get("max_per_event")
    result = Percentage(
        rate=rate_,
        fixed_amount=_decimal("fixed_amount", props.get("fixed_amount", 0), MAX_AMOUNT),
        free_units=_check_int("free_units", props.get("free_units", 0), 0, MAX_COUNT),
        min_per_event=_decimal("min_per_event", props.get("min_per_event", 0), MAX_AMOUNT),
        max_per_event=None if maximum is None else _decimal("max_per_event", maximum, MAX_AMOUNT),
    )
    if result.max_per_event is not None and result.max_per_event < result.min_per_event:
        raise PricingError("max_per_event", "must not be less than min_per_event")
    return result


_PARSERS: Final[dict[str, Callable[[Mapping[str, Any]], Properties]]] = {
    "per_unit": _parse_per_unit,
    "graduated": _parse_graduated,
    "volume": _parse_volume,
    "package": _parse_package,
    "percentage": _parse_percentage,
}


def _tiers(value: Any) -> tuple[Tier, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise PricingError("tiers", "must be a non-empty list")
    tiers: list[Tier] = []
    last = len(value) - 1
    for i, raw in enumerate(value):
        path = f"tiers[{i}]"
        if not isinstance(raw, Mapping):
            raise PricingError(path, "must be an object")
        _only(raw, "a tier", ("up_to", "unit_amount", "flat_amount"), prefix=f"{path}.")
        if "up_to" not in raw:
            raise PricingError(f"{path}.up_to", "is required (null for the last tier)")
        up_to = raw["up_to"]
        if up_to is None:
            if i != last:
                raise PricingError(f"{path}.up_to", "only the last tier may be unbounded (null)")
        else:
            _check_int(f"{path}.up_to", up_to, 1, MAX_COUNT)
            if i == last:
                raise PricingError(f"{path}.up_to", "the last tier must be unbounded (null)")
            previous = tiers[-1].up_to if tiers else None
            if previous is not None and up_to <= previous:
                raise PricingError(f"{path}.up_to", f"must be greater than tiers[{i - 1}].up_to")
        unit_amount = _unit_amount(f"{path}.unit_amount", _required(raw, "unit_amount", path))
        flat = _check_int(f"{path}.flat_amount", raw.get("flat_amount", 0), 0, MAX_AMOUNT)
        tiers.append(Tier(up_to, unit_amount, flat))
    return tuple(tiers)


def _only(props: Mapping[str, Any], what: str, allowed: tuple[str, ...], prefix: str = "") -> None:
    unknown = sorted(str(key) for key in props if key not in allowed)
    if unknown:
        raise PricingError(
            f"{prefix}{unknown[0]}", f"unknown property for {what} (allowed: {', '.join(allowed)})"
        )


def _required(props: Mapping[str, Any], key: str, parent: str = "") -> Any:
    if key not in props or props[key] is None:
        raise PricingError(f"{parent}.{key}" if parent else key, "is required")
    return props[key]


def _check_int(path: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, float):
        raise PricingError(path, "must be an integer, not a float")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PricingError(path, "must be an integer")
    if value < minimum:
        raise PricingError(
            path, "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        )
    if value > maximum:
        raise PricingError(path, f"must be at most {maximum}")
    return value


def _unit_amount(path: str, value: Any) -> Decimal:
    return _decimal(path, value, MAX_AMOUNT)


def _decimal(path: str, value: Any, maximum: Decimal | int) -> Decimal:
    """A non-negative decimal string (or int) with at most 12 decimals, never a float."""
    if isinstance(value, float):
        raise PricingError(path, "must be a decimal string, not a float")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PricingError(path, 'must be a decimal string such as "0.25"')
    if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
        raise PricingError(path, f'{value!r} is not a decimal string such as "0.25"')
    try:
        result = parse_decimal(value, max_decimals=MAX_UNIT_DECIMALS)
    except ValueError as exc:
        raise PricingError(path, str(exc)) from None
    if result < 0:
        raise PricingError(path, "must not be negative")
    if result.is_zero():
        result = abs(result)  # "-0" → 0
    if result > maximum:
        raise PricingError(path, f"must be at most {maximum}")
    return result


# --- serialization ----------------------------------------------------------------------


def dump_properties(props: Properties) -> dict[str, Any]:
    """The canonical JSON form of parsed properties (``parse_charge`` accepts it back)."""
    if isinstance(props, PerUnit):
        return {"unit_amount": _text(props.unit_amount)}
    if isinstance(props, Graduated | Volume):
        return {"tiers": [_dump_tier(t) for t in props.tiers]}
    if isinstance(props, Package):
        return {
            "package_size": props.package_size,
            "package_amount": props.package_amount,
            "free_units": props.free_units,
        }
    result: dict[str, Any] = {"rate": _text(props.rate)}
    if props.fixed_amount:
        result["fixed_amount"] = _text(props.fixed_amount)
    if props.free_units:
        result["free_units"] = props.free_units
    if props.min_per_event:
        result["min_per_event"] = _text(props.min_per_event)
    if props.max_per_event is not None:
        result["max_per_event"] = _text(props.max_per_event)
    return result


def _dump_tier(tier: Tier) -> dict[str, Any]:
    result: dict[str, Any] = {"up_to": tier.up_to, "unit_amount": _text(tier.unit_amount)}
    if tier.flat_amount:
        result["flat_amount"] = tier.flat_amount
    return result


def _text(value: Decimal) -> str:
    return f"{value:f}"  # plain notation: str(Decimal("1E-12")) would be "1E-12"
