"""Late and corrected usage for periods that are already closed (invoiced).

A period of a subscription closes ``lateness_seconds`` (per meter) after it ends: the
invoice run bills it then. An event for a closed period is rejected with ``period_closed``,
unless the organization allows late usage: then it is counted, and the difference between
what the period's charges came to and what they come to now becomes an adjustment on the
subscription's next invoice, naming the events it comes from. Voiding an event of a closed
period always produces such an adjustment (a correction is never silent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from kassa.catalog.models import Meter, PlanVersion
from kassa.clocks.models import TestClock
from kassa.core.clock import Clock
from kassa.core.errors import AmountOutOfRange
from kassa.core.ids import new_id
from kassa.customers.models import Customer
from kassa.db import bulk
from kassa.pricing import AmountOutOfRange as Unratable
from kassa.pricing import parse_charge, rate_charge
from kassa.subscriptions import rules as periods
from kassa.subscriptions import support
from kassa.subscriptions.models import Adjustment, Subscription

LIVE = ("trialing", "active", "past_due", "suspended", "paused")


@dataclass(frozen=True)
class Window:
    """The customer's subscription that charges a meter, and where its open time starts."""

    subscription: Subscription
    open_from: datetime  # events before this belong to a period that is already closed
    lateness: timedelta


def windows(
    session: Session, org_id: str, customer_ids: Iterable[str], now: datetime
) -> dict[tuple[str, str], Window]:
    """(customer, meter) → window, for live subscriptions whose plan charges the meter."""
    ids = list(set(customer_ids))
    if not ids:
        return {}
    subs = session.scalars(
        select(Subscription)
        .where(
            Subscription.org_id == org_id,
            bulk.among(Subscription.customer_id, ids),
            Subscription.status.in_(LIVE),
        )
        .order_by(Subscription.id)
    ).all()
    lateness = {
        m.id: timedelta(seconds=m.lateness_seconds)
        for m in session.scalars(select(Meter).where(Meter.org_id == org_id))
    }
    # one query each for the plan versions and the test clocks involved (a hot path: a
    # batch may name thousands of subscribed customers)
    pairs = {(sub.plan_id, sub.plan_version) for sub in subs}
    versions = (
        {
            (v.plan_id, v.version): v
            for v in session.scalars(
                select(PlanVersion).where(
                    PlanVersion.org_id == org_id,
                    tuple_(PlanVersion.plan_id, PlanVersion.version).in_(pairs),
                )
            )
        }
        if pairs
        else {}
    )
    clock_times: dict[str, datetime] = {
        cid: frozen
        for cid, frozen in session.execute(
            select(Customer.id, TestClock.frozen_time)
            .join(
                TestClock,
                (TestClock.org_id == Customer.org_id) & (TestClock.id == Customer.test_clock_id),
            )
            .where(
                Customer.org_id == org_id,
                bulk.among(Customer.id, ids),
            )
        )
    }
    found: dict[tuple[str, str], Window] = {}
    for sub in subs:
        version = versions[(sub.plan_id, sub.plan_version)]
        sub_now = clock_times.get(sub.customer_id, now)
        for charge in version.charges:
            meter_id = charge["meter"]
            late = lateness.get(meter_id, timedelta(0))
            # the current period is open; the one before it until its lateness runs out
            open_from = sub.current_period_start
            if sub_now < sub.current_period_start + late:
                open_from = _previous_start(session, sub)
            found.setdefault((sub.customer_id, meter_id), Window(sub, open_from, late))
    return found


def _previous_start(session: Session, sub: Subscription) -> datetime:
    if sub.current_period_start <= sub.start_at:
        return sub.start_at
    return period_containing(session, sub, sub.current_period_start - timedelta(microseconds=1))[0]


def period_containing(
    session: Session, sub: Subscription, ts: datetime
) -> tuple[datetime, datetime]:
    """The billing period of ``sub`` that ``ts`` falls in (stub periods included)."""
    plan, _ = support.plan_of(session, sub)
    tz = support.timezone_of(session, support.customer_of(session, sub))
    interval = support.interval_of(plan)
    if ts < sub.billing_anchor:
        return max(sub.start_at, periods.period_boundary(sub.billing_anchor, interval, -1, tz)), (
            sub.billing_anchor
        )
    start, end, _ = periods.period_at(sub.billing_anchor, interval, tz, ts)
    return max(start, sub.start_at), end


def charge_amount(
    session: Session, sub: Subscription, meter_id: str, start: datetime, end: datetime
) -> int:
    """What the subscription's charges on ``meter_id`` come to for [start, end) right now."""
    from kassa.metering import service as metering

    plan, version = support.plan_of(session, sub)
    usage = metering.usage_for_period(
        session, sub.org_id, sub.customer_id, plan, version, start, end
    )
    total = 0
    for stored in version.charges:
        if stored["meter"] == meter_id:
            charge = parse_charge(
                meter_id, stored["model"], stored["properties"], stored.get("min_amount")
            )
            try:
                total += rate_charge(charge, usage[meter_id]).amount
            except Unratable as exc:
                raise AmountOutOfRange(
                    detail=f"With this event the usage of meter {meter_id} for "
                    f"{start:%Y-%m-%d} – {end:%Y-%m-%d} cannot be billed: {exc.reason}."
                ) from None
    return total


def record_delta(
    session: Session, sub: Subscription, meter_id: str, period: tuple[datetime, datetime],
    before: int, after: int, event_ids: list[str], reason: str, clock: Clock,
) -> Adjustment | None:  # fmt: skip
    """The difference for a closed period, as an adjustment on the next invoice."""
    delta = after - before
    if delta == 0:
        return None
    meter = session.scalars(
        select(Meter).where(Meter.org_id == sub.org_id, Meter.id == meter_id)
    ).one()
    adjustment = Adjustment(
        org_id=sub.org_id, id=new_id("il"), subscription_id=sub.id, kind="usage_correction",
        description=f"{reason}: {meter.name}, {period[0]:%Y-%m-%d} – {period[1]:%Y-%m-%d}",
        amount=delta, period_start=period[0], period_end=period[1], meter_id=meter_id,
        event_ids=sorted(event_ids), created_at=clock.now(),
    )  # fmt: skip
    session.add(adjustment)
    session.flush()
    return adjustment
