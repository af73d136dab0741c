from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned

AGGREGATIONS = ("count", "sum", "max", "unique_count", "latest", "time_weighted_avg")


class Meter(TenantOwned, Base):
    __tablename__ = "meters"
    __table_args__ = (
        UniqueConstraint("org_id", "event_name"),
        CheckConstraint(
            "aggregation IN ('count', 'sum', 'max', 'unique_count', 'latest', 'time_weighted_avg')",
            name="aggregation",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_name: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    aggregation: Mapped[str] = mapped_column(String(20))
    value_property: Mapped[str | None] = mapped_column(String(100))
    unique_property: Mapped[str | None] = mapped_column(String(100))
    unit: Mapped[str | None] = mapped_column(String(40))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    lateness_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    anomaly_multiplier: Mapped[Decimal | None] = mapped_column(Numeric)
    anomaly_min_periods: Mapped[int] = mapped_column(Integer, default=3)
    created_at: Mapped[datetime]


class Plan(TenantOwned, Base):
    """A plan's identity and the parts no version may change (currency, interval)."""

    __tablename__ = "plans"
    __table_args__ = (
        UniqueConstraint("org_id", "code"),
        CheckConstraint("interval IN ('day', 'week', 'month', 'year')", name="interval"),
        CheckConstraint("interval_count BETWEEN 1 AND 36", name="interval_count"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(5))
    interval_count: Mapped[int] = mapped_column(Integer)
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class PlanVersion(TenantOwned, Base):
    """An immutable version of a plan's prices; subscriptions point at one."""

    __tablename__ = "plan_versions"
    __table_args__ = (
        ForeignKeyConstraint(["org_id", "plan_id"], ["plans.org_id", "plans.id"]),
        CheckConstraint("amount >= 0", name="amount"),
        CheckConstraint("trial_days >= 0", name="trial_days"),
    )

    plan_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    pay_in_advance: Mapped[bool]
    trial_days: Mapped[int] = mapped_column(Integer)
    charges: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    entitlements: Mapped[dict[str, Any]] = mapped_column(JSONB)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]


class Coupon(TenantOwned, Base):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("org_id", "code"),
        CheckConstraint("duration IN ('once', 'repeating', 'forever')", name="duration"),
        CheckConstraint("(percent_off IS NULL) <> (amount_off IS NULL)", name="percent_xor_amount"),
        CheckConstraint(
            "max_redemptions IS NULL OR times_redeemed <= max_redemptions", name="redemptions"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    percent_off: Mapped[str | None] = mapped_column(String(20))
    amount_off: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    duration: Mapped[str] = mapped_column(String(10))
    duration_in_periods: Mapped[int | None] = mapped_column(Integer)
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0)
    redeem_by: Mapped[datetime | None]
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]
