from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from kassa.core.money import parse_decimal
from kassa.core.schemas import (
    Amount,
    ExactDecimal,
    Metadata,
    PositiveAmount,
    PositiveInt4,
    Strict,
    Timestamp,
)
from kassa.orgs.schemas import check_currency

Aggregation = Literal["count", "sum", "max", "unique_count", "latest", "time_weighted_avg"]
Model = Literal["per_unit", "graduated", "volume", "package", "percentage"]
IntervalUnit = Literal["day", "week", "month", "year"]
NEEDS_VALUE = {"sum", "max", "latest", "time_weighted_avg"}
EntitlementValue = bool | int | str


class MeterIn(Strict):
    event_name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    name: str = Field(min_length=1, max_length=200)
    aggregation: Aggregation
    value_property: str | None = Field(
        default=None, min_length=1, max_length=100, validate_default=True
    )
    unique_property: str | None = Field(
        default=None, min_length=1, max_length=100, validate_default=True
    )
    unit: str | None = Field(default=None, max_length=40)
    filters: dict[str, list[str]] = Field(default_factory=dict, max_length=20)
    lateness_seconds: int = Field(
        default=3600,
        ge=0,
        le=90 * 86_400,
        description="How long after a period ends its usage is still accepted into it",
    )
    anomaly_multiplier: ExactDecimal | None = Field(
        default=None, description='Flag a period above this × the trailing median, e.g. "3"'
    )
    anomaly_min_periods: int = Field(default=3, ge=1, le=24)

    @field_validator("anomaly_multiplier")
    @classmethod
    def _multiplier(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        number = parse_decimal(value, max_decimals=4)
        if number <= 1:
            raise ValueError("must be greater than 1")
        return number

    @field_validator("value_property")
    @classmethod
    def _value_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        aggregation = info.data.get("aggregation")
        if aggregation in NEEDS_VALUE and not value:
            raise ValueError(f"is required for aggregation {aggregation}")
        return value

    @field_validator("unique_property")
    @classmethod
    def _unique_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("aggregation") == "unique_count" and not value:
            raise ValueError("is required for aggregation unique_count")
        return value


class Meter(BaseModel):
    id: str
    object: Literal["meter"] = "meter"
    event_name: str
    name: str
    aggregation: Aggregation
    value_property: str | None
    unique_property: str | None
    unit: str | None
    filters: dict[str, list[str]]
    lateness_seconds: int
    anomaly_multiplier: str | None
    anomaly_min_periods: int
    created_at: datetime


class ChargeIn(Strict):
    meter: str = Field(min_length=1, max_length=100, description="Meter id or event_name")
    model: Model
    properties: dict[str, Any] = Field(default_factory=dict)
    min_amount: Amount | None = None
    name: str | None = Field(default=None, max_length=200)


class Charge(BaseModel):
    meter: str
    event_name: str
    model: Model
    properties: dict[str, Any]
    min_amount: int | None
    name: str | None


class PlanIn(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    currency: str
    interval: IntervalUnit
    interval_count: int = Field(default=1, ge=1, le=36)
    amount: Amount = 0
    pay_in_advance: bool = True
    trial_days: int = Field(default=0, ge=0, le=730)
    charges: list[ChargeIn] = Field(default_factory=list, max_length=50)
    entitlements: dict[str, EntitlementValue] = Field(default_factory=dict, max_length=200)
    metadata: Metadata | None = None

    _currency = field_validator("currency")(check_currency)


class PlanPatch(Strict):
    """Every change makes a new version; running subscriptions keep theirs until migrated."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    amount: Amount | None = None
    pay_in_advance: bool | None = None
    trial_days: int | None = Field(default=None, ge=0, le=730)
    charges: list[ChargeIn] | None = Field(default=None, max_length=50)
    entitlements: dict[str, EntitlementValue] | None = Field(default=None, max_length=200)
    metadata: Metadata | None = None


class Plan(BaseModel):
    id: str
    object: Literal["plan"] = "plan"
    code: str
    name: str
    currency: str
    interval: IntervalUnit
    interval_count: int
    amount: int
    pay_in_advance: bool
    trial_days: int
    charges: list[Charge]
    entitlements: dict[str, EntitlementValue]
    version: int
    latest_version: int
    metadata: dict[str, str]
    created_at: datetime


class MigrateIn(Strict):
    from_version: PositiveInt4
    to_version: PositiveInt4
    effective: Literal["now", "period_end"] = "period_end"


class MigrateOut(BaseModel):
    object: Literal["plan_migration"] = "plan_migration"
    plan: str
    from_version: int
    to_version: int
    effective: Literal["now", "period_end"]
    subscriptions: int = Field(description="How many subscriptions were migrated")
    has_more: bool = Field(
        default=False,
        description="More remain (one call moves at most KASSA_MAX_PLAN_MIGRATION_PER_REQUEST):"
        " call again with the same body",
    )


class CouponIn(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    name: str | None = Field(default=None, max_length=200)
    percent_off: ExactDecimal | None = Field(
        default=None, description='Decimal string or integer, e.g. "12.5"'
    )
    amount_off: PositiveAmount | None = Field(default=None, validate_default=True)
    currency: str | None = Field(default=None, validate_default=True)
    duration: Literal["once", "repeating", "forever"]
    duration_in_periods: int | None = Field(default=None, ge=1, le=1200, validate_default=True)
    max_redemptions: PositiveInt4 | None = None
    redeem_by: Timestamp | None = None
    metadata: Metadata | None = None

    @field_validator("percent_off")
    @classmethod
    def _percent(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        number = parse_decimal(value, max_decimals=4)
        if not 0 < number <= 100:
            raise ValueError("must be greater than 0 and at most 100")
        return number

    @field_validator("amount_off")
    @classmethod
    def _one_kind(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "percent_off" not in info.data:
            return value  # percent_off itself was invalid: that error is the only one
        if (info.data["percent_off"] is None) == (value is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return value

    @field_validator("currency")
    @classmethod
    def _currency_with_amount(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = check_currency(value)
        if "amount_off" not in info.data:
            return value  # amount_off was invalid (or both were given): reported there
        if info.data["amount_off"] is not None and value is None:
            raise ValueError("is required with amount_off")
        return value

    @field_validator("duration_in_periods")
    @classmethod
    def _periods(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "duration" not in info.data:
            return value  # duration was invalid: reported there
        if (info.data["duration"] == "repeating") != (value is not None):
            raise ValueError("is required for duration repeating, and only for it")
        return value


class Coupon(BaseModel):
    id: str
    object: Literal["coupon"] = "coupon"
    code: str
    name: str | None
    percent_off: str | None
    amount_off: int | None
    currency: str | None
    duration: Literal["once", "repeating", "forever"]
    duration_in_periods: int | None
    max_redemptions: int | None
    times_redeemed: int
    redeem_by: datetime | None
    valid: bool
    metadata: dict[str, str]
    created_at: datetime
