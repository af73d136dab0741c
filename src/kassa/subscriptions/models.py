from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned

STATUSES = ("scheduled", "trialing", "active", "past_due", "suspended", "paused", "canceled")


class Subscription(TenantOwned, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled', 'trialing', 'active', 'past_due', 'suspended', 'paused',"
            " 'canceled')",
            name="status",
        ),
        CheckConstraint("quantity >= 1", name="quantity"),
        CheckConstraint("current_period_end > current_period_start", name="period"),
        Index("ix_subscriptions_org_id_customer_id", "org_id", "customer_id"),
        # due work in the order a billing run takes it (migration 0009)
        Index("ix_subscriptions_org_id_next_action_at_id", "org_id", "next_action_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40))
    plan_id: Mapped[str] = mapped_column(String(40))
    plan_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[int] = mapped_column(Integer)
    coupon_id: Mapped[str | None] = mapped_column(String(40))
    coupon_periods_used: Mapped[int] = mapped_column(Integer, default=0)
    start_at: Mapped[datetime]
    billing_anchor: Mapped[datetime]
    trial_start: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    trial_will_end_sent: Mapped[bool] = mapped_column(default=False)
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    pending_plan_id: Mapped[str | None] = mapped_column(String(40))
    pending_plan_version: Mapped[int | None] = mapped_column(Integer)
    pending_quantity: Mapped[int | None] = mapped_column(Integer)
    next_action_at: Mapped[datetime | None]
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    entitlement_overrides: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # the last billing failure a run recorded (code, message, first_failed_at,
    # last_failed_at, attempts, next_attempt_at) and when runs try again (migration 0014)
    billing_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    billing_retry_at: Mapped[datetime | None]


class Adjustment(TenantOwned, Base):
    """An amount owed or credited between invoices (prorations), waiting for the next
    invoice of its subscription, which marks it ``invoiced_at``."""

    __tablename__ = "subscription_adjustments"
    __table_args__ = (
        Index("ix_subscription_adjustments_org_id_subscription_id", "org_id", "subscription_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(300))
    amount: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    meter_id: Mapped[str | None] = mapped_column(String(40))
    event_ids: Mapped[list[str] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    invoiced_at: Mapped[datetime | None]
