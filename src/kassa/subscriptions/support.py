"""Small shared pieces of the subscriptions context: loading, zones, fees, snapshots."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.catalog import plans
from kassa.catalog.models import Plan, PlanVersion
from kassa.core.clock import Clock
from kassa.core.errors import Conflict, NotFound
from kassa.core.ids import looks_like_id
from kassa.customers.models import Customer
from kassa.db import cache
from kassa.events import service as events
from kassa.orgs import service as orgs
from kassa.subscriptions import rules
from kassa.subscriptions.models import Subscription
from kassa.subscriptions.schemas import Subscription as SubscriptionOut

TRIAL_WILL_END_NOTICE = timedelta(days=3)
_MICROSECOND = timedelta(microseconds=1)


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"
    title = "No such subscription"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "The subscription cannot do that in its current status"


class CatchingUp(Conflict):
    code = "subscription_catching_up"
    title = "The subscription is catching up on past billing periods"

    def __post_init__(self) -> None:
        self.detail = self.detail or (
            "More billing periods are due than one request catches up; the billing run (or"
            " the test clock's next advance) bills them in bounded steps. Retry shortly."
        )
        self.headers.setdefault("Retry-After", "60")
        super().__post_init__()


def load(session: Session, org_id: str, sub_id: str, *, lock: bool = False) -> Subscription:
    """A subscription of this org as stored; ``service.current`` also catches it up."""
    if not looks_like_id(sub_id, "sub"):
        raise SubscriptionNotFound()
    stmt = select(Subscription).where(Subscription.org_id == org_id, Subscription.id == sub_id)
    if lock:
        stmt = stmt.with_for_update()
    sub = session.scalars(stmt).one_or_none()
    if sub is None:
        raise SubscriptionNotFound()
    return sub


def customer_of(session: Session, sub: Subscription) -> Customer:
    customer = cache.get(session, Customer, (sub.org_id, sub.customer_id))
    assert customer is not None, f"subscription {sub.id} names no customer"
    return customer


def timezone_of(session: Session, customer: Customer) -> str:
    """Billing periods run in the customer's zone, else the organization's."""
    if customer.timezone:
        return customer.timezone
    return orgs.load(session, customer.org_id).timezone


def plan_of(session: Session, sub: Subscription) -> tuple[Plan, PlanVersion]:
    plan = plans.resolve(session, sub.org_id, sub.plan_id)
    return plan, plans.version_of(session, plan, sub.plan_version)


def interval_of(plan: Plan) -> rules.Interval:
    return _interval(plan.interval, plan.interval_count)


@functools.cache  # a handful of distinct intervals: one object each, quick to hash and compare
def _interval(unit: str, count: int) -> rules.Interval:
    return rules.Interval(unit, count)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)  # pure; a billing chunk asks the same few thousand times
def first_period(
    start: datetime, anchor: datetime, interval: rules.Interval, tz: str
) -> tuple[datetime, datetime]:
    """The first billing period from ``start`` on the anchor's series of boundaries: up to
    the anchor when it lies ahead (a stub period), else up to the next boundary."""
    if anchor > start:
        return start, anchor
    _, end, _ = rules.period_at(anchor, interval, tz, start)
    return start, end


def full_period(
    anchor: datetime, interval: rules.Interval, tz: str, end: datetime
) -> tuple[datetime, datetime]:
    """The regular (full-length) period of the anchor's series that ends at ``end``."""
    if end <= anchor:
        return rules.period_boundary(anchor, interval, -1, tz), anchor
    start, stop, _ = rules.period_at(anchor, interval, tz, end - _MICROSECOND)
    return start, stop


@functools.lru_cache(maxsize=4096)  # pure, as first_period
def fixed_fee(
    amount: int, quantity: int, start: datetime, end: datetime, anchor: datetime,
    interval: rules.Interval, tz: str,
) -> Decimal:  # fmt: skip
    """The fixed fee for ``[start, end)``: the full fee, prorated by seconds when the span
    is shorter than the regular period (a stub before the anchor). Unrounded minor units."""
    full_start, full_end = full_period(anchor, interval, tz, end)
    return rules.prorate(amount * quantity, full_start, full_end, max(start, full_start), end)


def next_action(sub: Subscription) -> datetime | None:
    """When this subscription next changes by itself (what the engine looks for)."""
    if sub.status == "canceled":
        return None
    if sub.status == "scheduled":
        return sub.start_at
    if sub.status == "trialing" and sub.trial_end is not None:
        if not sub.trial_will_end_sent:
            return max(sub.trial_end - TRIAL_WILL_END_NOTICE, sub.current_period_start)
        return sub.trial_end
    return sub.current_period_end


def to_schema(session: Session, sub: Subscription) -> SubscriptionOut:
    plan = plans.resolve(session, sub.org_id, sub.plan_id)
    pending = (
        plans.resolve(session, sub.org_id, sub.pending_plan_id) if sub.pending_plan_id else plan
    )
    return SubscriptionOut(**_view(sub, plan, pending.id))


def snapshot(sub: Subscription, plan: Plan) -> dict[str, Any]:
    """``to_schema(session, sub).model_dump(mode="json")`` when ``sub``'s plan is at hand,
    as JSON data directly (msgspec, in C, writes times as pydantic does: RFC 3339, UTC as
    "Z"): a billing chunk renews thousands of subscriptions, and building each model first
    cost more than the rest of its event. A test holds the two alike."""
    data: dict[str, Any] = msgspec.to_builtins(_view(sub, plan, sub.pending_plan_id or plan.id))
    return data


def _view(sub: Subscription, plan: Plan, pending_plan_id: str) -> dict[str, Any]:
    """The fields of the API view of ``sub`` (``pending_plan_id``: its pending plan's)."""
    pending = None
    if sub.pending_plan_id is not None or sub.pending_quantity is not None:
        pending = {
            "plan": pending_plan_id,
            "plan_version": sub.pending_plan_version or sub.plan_version,
            "quantity": sub.pending_quantity or sub.quantity,
        }
    return {
        "id": sub.id, "object": "subscription", "customer": sub.customer_id, "plan": plan.id,
        "plan_code": plan.code, "plan_version": sub.plan_version, "status": sub.status,
        "quantity": sub.quantity, "coupon": sub.coupon_id, "start_at": sub.start_at,
        "billing_anchor": sub.billing_anchor, "current_period_start": sub.current_period_start,
        "current_period_end": sub.current_period_end, "trial_start": sub.trial_start,
        "trial_end": sub.trial_end, "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": sub.canceled_at, "ended_at": sub.ended_at, "paused_at": sub.paused_at,
        "pending_change": pending, "metadata": sub.metadata_,
        "entitlement_overrides": sub.entitlement_overrides, "created_at": sub.created_at,
        "billing_error": sub.billing_error,
    }  # fmt: skip


def emit(session: Session, clock: Clock, sub: Subscription, type_: str, at: datetime) -> None:
    """Record ``type_`` with the subscription's snapshot, at business time ``at``."""
    events.record(session, clock, sub.org_id, type_, to_schema(session, sub), at)
