"""The upcoming invoice: exactly what the next invoice of a subscription will contain,
computed, not stored. The invoice issue (next) composes real invoices the same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from kassa.catalog import coupons, plans
from kassa.catalog.models import Coupon, Plan, PlanVersion
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.money import multiply, round_minor
from kassa.customers.models import Customer
from kassa.orgs import service as orgs
from kassa.pricing import Period, PlanPricing, Usage, rate
from kassa.subscriptions import service, support
from kassa.subscriptions.models import Subscription
from kassa.subscriptions.schemas import InvoiceLine, TaxLine, UpcomingInvoice
from kassa.subscriptions.support import InvalidTransition
from kassa.tax import rules as tax

UsageSource = Callable[[Session, Subscription, datetime, datetime], Mapping[str, Usage]]


def metered_usage(
    session: Session, sub: Subscription, start: datetime, end: datetime
) -> Mapping[str, Usage]:
    """What the subscription's charges are rated on: the metering pipeline's exact values."""
    from kassa.metering import service as metering

    plan, version = support.plan_of(session, sub)
    return metering.usage_for_period(
        session, sub.org_id, sub.customer_id, plan, version, start, end
    )


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


def _party(customer: Customer) -> tax.TaxParty:
    return tax.TaxParty(
        country=(customer.address or {}).get("country"),
        kind=customer.tax_kind,  # type: ignore[arg-type]
        tax_id=customer.tax_id,
        exempt=customer.tax_exempt,
    )


def upcoming(
    session: Session, principal: Principal, sub_id: str, clock: Clock,
    usage_source: UsageSource = metered_usage,
) -> UpcomingInvoice:  # fmt: skip
    sub = service.current(session, principal.org_id, sub_id, clock)
    if sub.status == "canceled":
        raise InvalidTransition(detail="A canceled subscription has no upcoming invoice.")
    if sub.status == "trialing" and sub.cancel_at_period_end:
        raise InvalidTransition(detail="The subscription ends with its trial, unbilled.")
    customer = support.customer_of(session, sub)
    tz = support.timezone_of(session, customer)
    plan, version = support.plan_of(session, sub)
    interval = support.interval_of(plan)
    lines: list[InvoiceLine] = []

    def fixed(v_amount: int, name: str, qty: int, start: datetime, end: datetime) -> None:
        fee = round_minor(
            support.fixed_fee(v_amount, qty, start, end, sub.billing_anchor, interval, tz)
        )
        if fee:
            lines.append(
                InvoiceLine(
                    kind="fixed", description=name, quantity=Decimal(qty),
                    unit_amount=Decimal(fee) / qty, amount=fee,
                    period_start=start, period_end=end,
                )
            )  # fmt: skip

    if sub.status in ("scheduled", "trialing"):
        paid_from = sub.trial_end or sub.start_at
        first = support.first_period(paid_from, sub.billing_anchor, interval, tz)
        if version.pay_in_advance:
            issued_at, period = paid_from, first
            fixed(version.amount, version.name, sub.quantity, *first)
        else:
            issued_at, period = first[1], first
            fixed(version.amount, version.name, sub.quantity, *first)
            _usage_lines(session, sub, lines, plan, version, first, usage_source)
    else:
        issued_at = sub.current_period_end
        period = (sub.current_period_start, sub.current_period_end)
        billing = sub.status != "paused"
        if billing and not version.pay_in_advance:
            fixed(version.amount, version.name, sub.quantity, *period)
        if billing:
            _usage_lines(session, sub, lines, plan, version, period, usage_source)
        if billing and version.pay_in_advance and not sub.cancel_at_period_end:
            next_plan = plans.resolve(session, sub.org_id, sub.pending_plan_id or sub.plan_id)
            next_version = plans.version_of(
                session, next_plan, sub.pending_plan_version or sub.plan_version
            )
            next_period = support.first_period(period[1], sub.billing_anchor, interval, tz)
            qty = sub.pending_quantity or sub.quantity
            fixed(next_version.amount, next_version.name, qty, *next_period)
    for adj in service.pending_adjustments(session, sub):
        lines.append(
            InvoiceLine(
                kind="usage" if adj.kind == "usage_correction" else "proration",
                description=adj.description, quantity=Decimal(1),
                unit_amount=Decimal(adj.amount), amount=adj.amount, meter=adj.meter_id,
                period_start=adj.period_start, period_end=adj.period_end,
                event_ids=adj.event_ids,
            )
        )  # fmt: skip

    subtotal = sum(line.amount for line in lines)
    coupon = coupons.resolve(session, sub.org_id, sub.coupon_id) if sub.coupon_id else None
    discount = 0
    if coupon is not None and coupon_applies(coupon, sub.coupon_periods_used):
        discount = discount_amount(coupon, subtotal)
        if discount:
            lines.append(
                InvoiceLine(
                    kind="discount", description=f"Coupon {coupon.code}", quantity=Decimal(1),
                    unit_amount=Decimal(-discount), amount=-discount,
                    period_start=period[0], period_end=period[1],
                )
            )  # fmt: skip
    org = orgs.load(session, sub.org_id)
    decision = tax.determine(org.tax_ruleset, org.country, _party(customer), issued_at.date())
    tax_lines = tax.compute_tax([(decision, line.amount) for line in lines]) if lines else []
    tax_total = sum(t.amount for t in tax_lines)
    total = subtotal - discount + tax_total
    return UpcomingInvoice(
        customer=customer.id, subscription=sub.id, currency=plan.currency,
        period_start=period[0], period_end=period[1], lines=lines, subtotal=subtotal,
        discount=discount,
        tax=[TaxLine(category=t.category, rate=t.rate, taxable_amount=t.taxable_amount,
                     amount=t.amount) for t in tax_lines],
        total=total, amount_due=max(total, 0), issued_at=issued_at,
        notes=[decision.note] if decision.note else [],
    )  # fmt: skip


def _usage_lines(
    session: Session, sub: Subscription, lines: list[InvoiceLine], plan: Plan,
    version: PlanVersion, period: tuple[datetime, datetime], usage_source: UsageSource,
) -> None:  # fmt: skip
    pricing = plans.pricing(session, plan, version)
    if not pricing.charges:
        return
    usage = usage_source(session, sub, *period)
    usage_only = PlanPricing(pricing.name, pricing.currency, 0, pricing.charges)
    for line in rate(usage_only, usage, Period(*period), sub.quantity):
        lines.append(
            InvoiceLine(
                kind="usage", description=line.description, quantity=line.quantity,
                unit_amount=line.unit_amount, amount=line.amount, meter=line.meter,
                period_start=line.period_start, period_end=line.period_end,
            )
        )  # fmt: skip
