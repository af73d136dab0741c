from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from kassa.core.schemas import Metadata, Strict

Status = Literal["scheduled", "trialing", "active", "past_due", "suspended", "paused", "canceled"]


class SubscriptionIn(Strict):
    customer: str = Field(min_length=1, max_length=255, description="Customer id or external_id")
    plan: str = Field(min_length=1, max_length=100, description="Plan id or code")
    start_at: AwareDatetime | None = Field(
        default=None,
        description="Default now. At most KASSA_MAX_BACKDATE_DAYS (366) days back and"
        " KASSA_MAX_FUTURE_START_DAYS (1827) ahead, else 422 out_of_range. A back-dated start"
        " catches up at most KASSA_MAX_CATCHUP_PERIODS_PER_STEP (24) periods in the request;"
        " the billing run bills the rest",
    )
    billing_anchor: AwareDatetime | None = Field(
        default=None,
        description="A period boundary; must fall within one interval after start"
        " (and between 1970 and 2200)",
    )
    trial_days: int | None = Field(default=None, ge=0, le=730)
    coupon: str | None = Field(default=None, max_length=100, description="Coupon id or code")
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    metadata: Metadata | None = None


class ChangeIn(Strict):
    plan: str | None = Field(default=None, min_length=1, max_length=100)
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    effective: Literal["now", "period_end"] = "now"
    proration: Literal["prorate", "none"] = "prorate"


class CancelIn(Strict):
    at_period_end: bool = True
    prorate: bool = True


class SubscriptionPatch(Strict):
    metadata: Metadata | None = None
    entitlement_overrides: dict[str, bool | int | str] | None = Field(default=None, max_length=200)


class PendingChange(BaseModel):
    plan: str
    plan_version: int
    quantity: int


class BillingError(BaseModel):
    """Why the billing run could not bill this subscription; later runs retry it (backoff)
    and a success clears it."""

    code: str = Field(description="Stable error code, e.g. amount_out_of_range")
    message: str
    first_failed_at: datetime
    last_failed_at: datetime
    attempts: int
    next_attempt_at: datetime


class Subscription(BaseModel):
    id: str
    object: Literal["subscription"] = "subscription"
    customer: str
    plan: str
    plan_code: str
    plan_version: int
    status: Status
    quantity: int
    coupon: str | None
    start_at: datetime
    billing_anchor: datetime
    current_period_start: datetime
    current_period_end: datetime
    trial_start: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    paused_at: datetime | None
    pending_change: PendingChange | None
    metadata: dict[str, str]
    entitlement_overrides: dict[str, Any]
    created_at: datetime
    billing_error: BillingError | None = Field(
        default=None, description="Set while billing runs fail on this subscription"
    )


class InvoiceLine(BaseModel):
    id: str | None = None
    kind: Literal["fixed", "usage", "proration", "discount", "one_off"]
    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: int
    meter: str | None = None
    period_start: datetime
    period_end: datetime
    event_ids: list[str] | None = Field(
        default=None, description="Usage events a correction line comes from"
    )


class TaxLine(BaseModel):
    category: str
    rate: Decimal
    taxable_amount: int
    amount: int


class UpcomingInvoice(BaseModel):
    id: None = None
    object: Literal["invoice"] = "invoice"
    number: None = None
    status: Literal["upcoming"] = "upcoming"
    customer: str
    subscription: str
    currency: str
    period_start: datetime
    period_end: datetime
    lines: list[InvoiceLine]
    subtotal: int
    discount: int
    tax: list[TaxLine]
    total: int
    amount_paid: int = 0
    amount_due: int
    issued_at: datetime = Field(description="When this invoice would be issued")
    notes: list[str]
