"""What an invoice of a subscription contains at one of its billing points, computed from
the subscription as it is *before* the point is passed. The upcoming-invoice preview and
the real invoice share this code, so the preview is exactly what will be billed.

Billing points:
- ``start``: the subscription (or its first paid period, after a trial) begins and the plan
  is paid in advance: the first period's fixed fee.
- ``period_end``: a period ends: its fixed fee when paid in arrears, its usage, the next
  period's fixed fee when paid in advance (unless the subscription ends), and the
  adjustments (prorations, late-usage differences) waiting since the last invoice.
- ``final``: the subscription is canceled now: usage so far and the waiting adjustments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from kassa.catalog import coupons, plans
from kassa.catalog.models import Coupon, Plan, PlanVersion
from kassa.core.money import multiply, round_minor
from kassa.customers.models import Customer
from kassa.ledger import postings as accounts
from kassa.orgs import service as orgs
from kassa.pricing import Period, PlanPricing, Usage, rate
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions import support
from kassa.subscriptions.models import Subscription
from kassa.tax import rules as tax

Point = Literal["start", "period_end", "final"]
UsageSource = Callable[[Session, Subscription, datetime, datetime], Mapping[str, Usage]]


def metered_usage(
    session: Session, sub: Subscription, start: datetime, end: datetime
) -> Mapping[str, Usage]:
    """What the subscription's charges are rated on: the metering pipeline's exact values."""
    plan, version = support.plan_of(session, sub)
    return usage_of(session, sub.org_id, sub.customer_id, plan, version, start, end)


def usage_of(
    session: Session, org_id: str, customer_id: str, plan: Plan, version: PlanVersion,
    start: datetime, end: datetime,
) -> Mapping[str, Usage]:  # fmt: skip
    from kassa.metering import service as metering

    return metering.usage_for_period(session, org_id, customer_id, plan, version, start, end)


@dataclass
class Line:
    kind: Literal["fixed", "usage", "proration", "discount", "one_off"]
    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: int
    account: str  # the revenue (or discount) ledger account
    period_start: datetime | None = None
    period_end: datetime | None = None
    meter: str | None = None
    event_ids: list[str] | None = None
    adjustment_id: str | None = None


@dataclass
class Composition:
    customer: Customer
    plan: Plan
    version: PlanVersion
    quantity: int
    currency: str
    period: tuple[datetime, datetime]
    issued_at: datetime
    lines: list[Line]
    coupon: Coupon | None
    decision: tax.TaxDecision
    adjustment_ids: list[str] = field(default_factory=list)

    @property
    def coupon_used(self) -> bool:
        return any(line.kind == "discount" for line in self.lines)


def coupon_applies(coupon: Coupon | None, periods_used: int) -> bool:
    if coupon is None:
        return False
    if coupon.duration == "forever":
        return True
    if coupon.duration == "once":
        return periods_used == 0
    return periods_used < (coupon.duration_in_periods or 0)


def discount_amount(coupon: Coupon, base: int) -> int:
    """Never more than the base, so the discount cannot make the invoice negative."""
    if base <= 0:
        return 0
    if coupon.percent_off is not None:
        return min(base, round_minor(multiply(base, Decimal(coupon.percent_off)) / 100))
    return min(base, coupon.amount_off or 0)


def discount_line(coupon: Coupon, lines: list[Line], period: tuple[datetime, datetime]) -> Line:
    base = sum(line.amount for line in lines if line.kind != "discount")
    amount = discount_amount(coupon, base)
    return Line(
        kind="discount", description=f"Coupon {coupon.code}", quantity=Decimal(1),
        unit_amount=Decimal(-amount), amount=-amount, account=accounts.DISCOUNTS,
        period_start=period[0], period_end=period[1],
    )  # fmt: skip


def party(customer: Customer) -> tax.TaxParty:
    return tax.TaxParty(
        country=(customer.address or {}).get("country"),
        kind=customer.tax_kind,  # type: ignore[arg-type]
        tax_id=customer.tax_id,
        exempt=customer.tax_exempt,
    )


def tax_decision(
    session: Session, org_id: str, customer: Customer, on: datetime
) -> tax.TaxDecision:
    org = orgs.load(session, org_id)
    day = on.astimezone(ZoneInfo(customer.timezone or org.timezone)).date()
    return tax.determine(org.tax_ruleset, org.country, party(customer), day)


def compose(
    session: Session, sub: Subscription, point: Point, *, at: datetime | None = None,
    usage_source: UsageSource = metered_usage,
) -> Composition:  # fmt: skip
    """The invoice of ``sub`` at ``point`` (``at`` only for ``final``: the cancel instant)."""
    customer = support.customer_of(session, sub)
    tz = support.timezone_of(session, customer)
    plan, version = support.plan_of(session, sub)
    interval = support.interval_of(plan)
    revenue = accounts.revenue(plan.code)
    lines: list[Line] = []

    def fixed(v: PlanVersion, qty: int, start: datetime, end: datetime) -> None:
        fee = round_minor(support.fixed_fee(v.amount, qty, start, end, sub.billing_anchor,
                                            interval, tz))  # fmt: skip
        if fee:
            lines.append(
                Line(kind="fixed", description=v.name, quantity=Decimal(qty),
                     unit_amount=Decimal(fee) / qty, amount=fee, account=revenue,
                     period_start=start, period_end=end)
            )  # fmt: skip

    if point == "start":
        period = (sub.current_period_start, sub.current_period_end)
        if sub.status in ("scheduled", "trialing"):
            paid_from = sub.trial_end or sub.start_at
            period = support.first_period(paid_from, sub.billing_anchor, interval, tz)
        issued_at = period[0]
        fixed(version, sub.quantity, *period)
    elif point == "final":
        assert at is not None
        period = (sub.current_period_start, max(at, sub.current_period_start))
        issued_at = at
        if sub.status not in ("paused", "scheduled", "trialing") and period[1] > period[0]:
            _usage_lines(session, sub, lines, plan, version, period, usage_source, revenue)
    else:
        issued_at = sub.current_period_end
        period = (sub.current_period_start, sub.current_period_end)
        billing = sub.status not in ("paused", "trialing", "scheduled")
        if billing and not version.pay_in_advance:
            fixed(version, sub.quantity, *period)
        if billing:
            _usage_lines(session, sub, lines, plan, version, period, usage_source, revenue)
        if billing and version.pay_in_advance and not sub.cancel_at_period_end:
            next_plan = plans.resolve(session, sub.org_id, sub.pending_plan_id or sub.plan_id)
            next_version = plans.version_of(
                session, next_plan, sub.pending_plan_version or sub.plan_version
            )
            next_period = support.first_period(period[1], sub.billing_anchor, interval, tz)
            fixed(next_version, sub.pending_quantity or sub.quantity, *next_period)
    adjustment_ids = []
    if point != "start":
        for adj in subscriptions.pending_adjustments(session, sub):
            adjustment_ids.append(adj.id)
            lines.append(
                Line(
                    kind="usage" if adj.kind == "usage_correction" else "proration",
                    description=adj.description, quantity=Decimal(1),
                    unit_amount=Decimal(adj.amount), amount=adj.amount, account=revenue,
                    meter=adj.meter_id, period_start=adj.period_start,
                    period_end=adj.period_end, event_ids=adj.event_ids, adjustment_id=adj.id,
                )
            )  # fmt: skip
    coupon = coupons.resolve(session, sub.org_id, sub.coupon_id) if sub.coupon_id else None
    if coupon is not None and coupon_applies(coupon, sub.coupon_periods_used):
        line = discount_line(coupon, lines, period)
        if line.amount:
            lines.append(line)
    return Composition(
        customer=customer, plan=plan, version=version, quantity=sub.quantity,
        currency=plan.currency, period=period, issued_at=issued_at, lines=lines,
        coupon=coupon if coupon_applies(coupon, sub.coupon_periods_used) else None,
        decision=tax_decision(session, sub.org_id, customer, issued_at),
        adjustment_ids=adjustment_ids,
    )  # fmt: skip


def usage_lines(
    session: Session, org_id: str, customer_id: str, plan: Plan, version: PlanVersion,
    quantity: int, period: tuple[datetime, datetime], usage: Mapping[str, Usage],
) -> list[Line]:  # fmt: skip
    pricing = plans.pricing(session, plan, version)
    if not pricing.charges:
        return []
    usage_only = PlanPricing(pricing.name, pricing.currency, 0, pricing.charges)
    return [
        Line(
            kind="usage", description=line.description, quantity=line.quantity,
            unit_amount=line.unit_amount, amount=line.amount,
            account=accounts.revenue(plan.code), meter=line.meter,
            period_start=line.period_start, period_end=line.period_end,
        )
        for line in rate(usage_only, usage, Period(*period), quantity)
    ]  # fmt: skip


def _usage_lines(
    session: Session, sub: Subscription, lines: list[Line], plan: Plan, version: PlanVersion,
    period: tuple[datetime, datetime], usage_source: UsageSource, revenue: str,
) -> None:  # fmt: skip
    pricing = plans.pricing(session, plan, version)
    if not pricing.charges:
        return
    usage = usage_source(session, sub, *period)
    lines.extend(
        usage_lines(session, sub.org_id, sub.customer_id, plan, version, sub.quantity, period,
                    usage)
    )  # fmt: skip


def tax_rows(decision: tax.TaxDecision, lines: list[Line]) -> list[tax.TaxLine]:
    return tax.compute_tax([(decision, line.amount) for line in lines]) if lines else []
